"""The center's desk and the responsible units' liaisons as bots, through the same HTTP API.

A ``DeskBot`` is the center's office (the dispatcher's, the supervisor's and the agent's accounts,
and a reviewer account per review role where the demo has one): after a human delay it answers a
consultation saved without an answer (直接办结, as the agent), sends each
ticket routed to a department (and each station ticket of a trade without field crews) to its
unit (``assign`` 交办), performs the review steps waiting for its reviewer accounts (one step per
account, never on a ticket the account recorded), decides a unit's pending return (mostly
re-route to another unit of the trade, or approve and send the ticket to that unit from the
pool) and a pending extension (mostly approve, as the supervisor).

A ``UnitBot`` is one liaison (account ``unit-<unit_id>``): it polls its inbox (``GET
/api/tickets``, scoped by the server to its unit and the units under it), acts only on the tickets
of the units it answers for, accepts (受理) after a delay, and after a handling time feeds back
(反馈) with a result text for the ticket's type and trade, signed by the unit's leader where the
type needs it. Some tickets it returns (退单, with a reason), asks an extension for (延期), or
answers late: it waits until the server shows the ticket overdue (the center's limits run on the
center's clock, not the simulated one). A station hands a ticket the center sent it to one of its
own crews, if it has any. It answers each open 督办 its units hold (``GET /api/supervisions``, the
server's scope; an escalated one is the holder's above) after a delay within the 督办's default
one-day deadline.

Delays are simulated seconds and pass ``speedup`` times faster, as for the other bots.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, Sequence

from simulators.crews import Get, Send, poll_until

log = logging.getLogger(__name__)

CONFLICT = 409
POOL = ("new", "reviewed", "returned", "reopened")
INBOX = ("assigned", "handling")
REVIEWERS = ("team_leader", "coordinator", "director")  # the roles of review steps (command.review)
TRADE = {"water": "供水", "power": "供电", "gas": "供气", "heating": "供热", "drainage": "排水",
         "sanitation": "环卫", "other": "公用事业"}
COMPLAINTS = {
    "power": ("经核查，用户反映的电压波动系台区负荷过重所致，已调整三相负荷并向用户说明致歉",
              "已约谈相关抄表员并批评教育，向用户当面致歉，电费差额已核实退还"),
    "water": ("经核查，停水前未按规定提前公告，已对责任班组通报批评，并向用户致歉",
              "已上门复核水表读数，确属抄错，已更正水费并向用户致歉"),
    "gas": ("已约谈入户安检人员，规范服务用语，向用户电话致歉", "经核查燃气表计量正常，已向用户解释并出具检定报告"),
    "heating": ("已上门测温，调整单元平衡阀后室温达标，已向用户致歉", "已对维修人员服务态度问题进行批评教育，用户表示认可"),
    "drainage": ("已安排专人清掏，完善巡查制度，已向用户说明", "经核查系施工单位违规排放，已责令整改"),
    "sanitation": ("已督促环卫所加密清运频次，现场已清理干净，已向用户致歉", "已对保洁员进行批评教育，落实定时清运"),
    "other": ("已核实情况并督促责任单位整改，已向用户说明", "已协调相关单位处理完毕，已电话告知用户"),
}
RESULTS = {
    "suggestion": ("已收到用户关于{trade}服务的建议，经研究将纳入下一步改进计划，已电话告知用户",
                   "建议已转相关科室研究落实，已向用户反馈并致谢"),
    "praise": ("已将用户的表扬转达当事班组并在单位内通报表扬，已致电用户致谢", "表扬已记入班组考核，已向用户致谢"),
    "service": ("已上门办理，{trade}服务事项已办结，用户确认", "已按用户要求办理完毕，并告知后续注意事项"),
    "repair": ("已安排人员现场处理，{trade}故障已排除", "现场隐患已排除，已清理现场"),
    "consultation": ("已电话答复用户的{trade}咨询", "已向用户解释相关政策"),
}
ANSWERS = ("已告知用户可通过微信公众号、支付宝或营业厅缴纳{trade}费用", "已向用户解释{trade}收费标准和计费方式",
           "已告知用户{trade}业务的办理流程和所需材料", "已向用户说明{trade}相关政策，用户表示清楚")
RETURN_REASONS = ("经核实不属本单位职责范围，请中心改派", "诉求地址不在本单位服务区域", "诉求涉及其他部门，本单位无法办理")
EXTENSION_REASONS = ("需协调多个部门共同办理，申请延期", "需现场勘查并等待检测结果", "涉及管网改造，需申请施工审批")
SUPERVISION_ANSWERS = ("已收到督办，已安排专人办理，将在期限内反馈办理结果", "单位负责人已督促经办人员加快办理，今日内反馈",
                       "已按督办要求现场核实，正在整改，整改完成后立即反馈")
LEADERS = ("王建国", "李红梅", "刘志强", "陈立新", "赵文华", "孙海涛", "周晓燕")
TITLES = ("主任", "副经理", "所长", "科长")


def feedback_text(ticket: Mapping[str, Any], rng: random.Random) -> str:
    """A plausible handling result (办理结果) for the ticket's type and trade."""
    category = ticket.get("category") or "other"
    if ticket.get("type") == "complaint":
        return rng.choice(COMPLAINTS.get(category, COMPLAINTS["other"]))
    texts = RESULTS.get(ticket.get("type") or "", RESULTS["service"])
    return rng.choice(texts).format(trade=TRADE.get(category, "公用事业"))


def liaison_units(tree: Iterable[Mapping[str, Any]]) -> list[str]:
    """The units the demo gives a liaison (``center.__main__._unit_accounts`` creates their
    accounts from this list): every active 二级 department and the first (lowest id) active 三级
    station of each."""
    units = [u for u in tree if u.get("active")]
    stations: dict[str, str] = {}
    for unit in sorted(units, key=lambda u: u["unit_id"]):
        if unit["level"] == 3:
            stations.setdefault(unit["parent_id"], unit["unit_id"])
    return [u["unit_id"] for u in units if u["level"] == 2] + sorted(stations.values())


def answering(tree: Iterable[Mapping[str, Any]], liaisons: Sequence[str]) -> dict[str, set[str]]:
    """liaison unit -> the units it answers for: its own and those under it without a liaison of
    their own nearer (a department answers for its stations that have none)."""
    parent = {u["unit_id"]: u.get("parent_id") for u in tree}
    out: dict[str, set[str]] = {unit: set() for unit in liaisons}
    for unit in parent:
        seen, holder = 0, unit
        while holder is not None and holder not in out and seen < 16:
            holder, seen = parent.get(holder), seen + 1
        if holder in out:
            out[holder].add(unit)
    return out


def alternatives(tree: Iterable[Mapping[str, Any]], liaisons: Sequence[str]) -> dict[str, list[str]]:
    """unit -> the other units of its trade that have a liaison (where the center re-routes a return)."""
    units = {u["unit_id"]: u for u in tree if u.get("active") and u["level"] in (2, 3)}
    out: dict[str, list[str]] = {}
    for unit_id, unit in units.items():
        trades = set(unit.get("trades") or ())
        out[unit_id] = [other for other in liaisons
                        if other != unit_id and other in units and trades & set(units[other].get("trades") or ())]
    return out


@dataclass(frozen=True)
class UnitPace:
    """A unit's human pace in simulated seconds (ranges drawn uniformly) and its habits (shares 0..1)."""

    accept_s: tuple[float, float] = (300.0, 2400.0)      # within the 1 h acceptance limit
    # from acceptance to feedback: half an hour to six hours, well within the working-day limits;
    # up to a day made a simulated day's backlog grow all day long (bench.demo_day never settled)
    handle_s: tuple[float, float] = (1800.0, 21600.0)
    supervision_s: tuple[float, float] = (900.0, 14400.0)  # answering a 督办, within its one-day default
    poll_s: float = 3.0                                  # wall seconds between two looks at the inbox
    return_share: float = 0.05
    extension_share: float = 0.05
    late_share: float = 0.05

    def __post_init__(self) -> None:
        for name in ("return_share", "extension_share", "late_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, not {getattr(self, name)}")


@dataclass
class _Plan:
    """What a unit means to do with one ticket in one state, and when."""

    state: str
    due: float
    ask_due: float
    returns: bool = False
    extends: bool = False
    late: bool = False


class _Bot:
    """Shared parts: a clock, delays in simulated seconds, an action with the version last read."""

    def __init__(self, name: str, speedup: float, rng: random.Random | None,
                 clock: Callable[[], float] | None):
        if speedup <= 0:
            raise ValueError(f"speed-up must be positive, not {speedup}")
        self.name, self.speedup = name, speedup
        self._rng = rng or random.Random(name)
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self.counts: Counter = Counter()  # actions done, and refusals as "<action>:<status>"
        self._refused: set[tuple[str, int, str]] = set()  # (ticket, version, action): not sent again

    def later(self, bounds: tuple[float, float], share: float = 1.0) -> float:
        """The loop time a delay drawn in ``bounds`` (simulated seconds, times ``share``) from now ends."""
        return self._clock() + self._rng.uniform(*bounds) * share / self.speedup

    async def act(self, send: Send, ticket: Mapping[str, Any], action: str, args: Mapping[str, Any]) -> bool:
        """Send one action with the version read; a refusal is counted (409: someone was faster)
        and the same action is not sent again until the ticket changes."""
        key = (ticket["number"], ticket["version"], action)
        if key in self._refused:
            return False
        status, body = await send(f"/api/tickets/{ticket['number']}/actions/{action}",
                                  {"expected_version": ticket["version"], **args})
        if status == 200 and isinstance(body, dict):
            self.counts[action] += 1
            return True
        self.counts[f"{action}:{status}"] += 1
        self._refused.add(key)
        if status != CONFLICT:
            log.warning("%s: %s %s refused (%s): %s", self.name, action, ticket["number"], status, body)
        return False

    async def listing(self, get: Get, states: Sequence[str], query: str = "state={}") -> list[dict]:
        """The tickets in these states this account sees, most pressing first (``query``: the
        filter each state is put into, e.g. a review role's queue ``review_role={}``)."""
        found: list[dict] = []
        for state in states:
            status, body = await get(f"/api/tickets?{query.format(state)}&sort=time_left&limit=500")
            if status != 200 or not isinstance(body, dict):
                self.counts[f"list:{status}"] += 1
                continue
            found += body.get("tickets", [])
        return found


class UnitBot(_Bot):
    """One unit liaison answering its inbox: 受理, 反馈 (sometimes late), 退单, 延期, 派给班组."""

    def __init__(self, name: str, units: Iterable[str], get: Get, send: Send, *,
                 crews: Mapping[str, Sequence[str]] | None = None,
                 speedup: float = 1.0, pace: UnitPace = UnitPace(), rng: random.Random | None = None,
                 clock: Callable[[], float] | None = None):
        """``units``: the units it answers for; ``crews``: unit -> its own crews (hand_to_crew)."""
        super().__init__(name, speedup, rng, clock)
        self.units, self.crews = frozenset(units), {u: tuple(c) for u, c in (crews or {}).items() if c}
        self._get, self._send, self.pace = get, send, pace
        self._plans: dict[str, _Plan] = {}
        self._asked: set[tuple[str, str]] = set()  # (ticket, request kind) asked once per ticket
        self._urged: dict[int, float] = {}  # 督办 id -> when this liaison answers it
        self.leader = f"{self._rng.choice(LEADERS)}（{self._rng.choice(TITLES)}）"

    def plan(self, ticket: Mapping[str, Any]) -> _Plan:
        """The plan for the ticket in its present state, drawn when it enters that state."""
        number, state = ticket["number"], ticket["state"]
        plan = self._plans.get(number)
        if plan is None or plan.state != state:
            pace, rng = self.pace, self._rng
            if state == "assigned":
                plan = _Plan(state, self.later(pace.accept_s), 0.0, returns=rng.random() < pace.return_share)
            else:
                plan = _Plan(state, self.later(pace.handle_s), self.later(pace.handle_s, 0.3),
                             extends=rng.random() < pace.extension_share, late=rng.random() < pace.late_share)
            self._plans[number] = plan
        return plan

    async def poll(self) -> int:
        """Look at the inbox once and do what is due; returns how many actions were done."""
        tickets = [t for t in await self.listing(self._get, INBOX) if t.get("unit_id") in self.units]
        waiting = {t["number"] for t in tickets}
        self._plans = {n: p for n, p in self._plans.items() if n in waiting}
        done = 0
        for ticket in tickets:
            if not ticket.get("request"):  # a pending request waits for the center
                done += await self.step(ticket)
        return done + await self.answer_supervisions()

    async def answer_supervisions(self) -> int:
        """Answer each open 督办 held by one of its units once its delay (drawn when first seen) has
        passed; returns how many were answered."""
        status, body = await self._get("/api/supervisions?state=open&limit=500")
        if status != 200 or not isinstance(body, dict):
            self.counts[f"supervisions:{status}"] += 1
            return 0
        rows = [r for r in body.get("supervisions", []) if r.get("holder") in self.units]
        self._urged = {r["id"]: self._urged.get(r["id"]) or self.later(self.pace.supervision_s) for r in rows}
        done = 0
        for row in rows:
            if self._urged[row["id"]] > self._clock():
                continue
            status, answer = await self._send(f"/api/supervisions/{row['id']}/answer",
                                              {"answer": self._rng.choice(SUPERVISION_ANSWERS)})
            if status == 200:
                self.counts["answer_supervision"] += 1
                done += 1
            else:  # 409: closed meanwhile (its ticket ended); it leaves the list
                self.counts[f"answer_supervision:{status}"] += 1
                self._urged[row["id"]] = self.later(self.pace.supervision_s)
                if status != CONFLICT:
                    log.warning("%s: 督办 %s answer refused (%s): %s", self.name, row["id"], status, answer)
        return done

    async def step(self, ticket: Mapping[str, Any]) -> int:
        """The next due action on one ticket (1 when done)."""
        plan, now, number = self.plan(ticket), self._clock(), ticket["number"]
        allowed = set(ticket.get("allowed_actions") or ())
        if ticket["state"] == "assigned":
            if now < plan.due:
                return 0
            if plan.returns and (number, "return") not in self._asked and "request_return" in allowed:
                self._asked.add((number, "return"))
                return int(await self.act(self._send, ticket, "request_return",
                                          {"reason": self._rng.choice(RETURN_REASONS)}))
            return int(await self.act(self._send, ticket, "unit_accept", {}))
        own = self.crews.get(ticket.get("unit_id") or "")
        if own and "hand_to_crew" in allowed:  # a station's ticket: the station's own crew goes
            return int(await self.act(self._send, ticket, "hand_to_crew", {"crew_id": self._rng.choice(own)}))
        if plan.extends and now >= plan.ask_due and (number, "extension") not in self._asked \
                and "request_extension" in allowed and ticket.get("deadlines", {}).get("resolve"):
            self._asked.add((number, "extension"))
            until = _parse(ticket["deadlines"]["resolve"]) + timedelta(days=self._rng.randint(2, 5))
            return int(await self.act(self._send, ticket, "request_extension", {
                "reason": self._rng.choice(EXTENSION_REASONS), "until": until.isoformat().replace("+00:00", "Z")}))
        if now < plan.due or (plan.late and ticket.get("limit_level") != "overdue"):
            return 0
        args = {"resolution": feedback_text(ticket, self._rng)}
        if ticket.get("type") == "complaint":
            args["signed_by"] = self.leader
        return int(await self.act(self._send, ticket, "feedback", args))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll the inbox until ``stop`` is set."""
        await poll_until(stop, self.poll, self.pace.poll_s, f"unit bot {self.name}")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Account:
    """One demo account the desk acts as: its user name and its API calls."""

    name: str
    get: Get
    send: Send


def my_step(ticket: Mapping[str, Any], role: str, name: str) -> bool:
    """Whether the review step waiting on the ticket is this role's and this account may take it:
    it did not record the ticket and approved no other step of it."""
    chain, step = ticket.get("review_chain") or (), ticket.get("review_step")
    if ticket.get("state") != "in_review" or step is None or not 0 <= step < len(chain) or chain[step] != role:
        return False
    return ticket.get("created_by") != name and name not in (ticket.get("reviewers") or ())


@dataclass(frozen=True)
class DeskHabits:
    """The center desk's pace (simulated seconds) and its decisions (shares 0..1)."""

    delay_s: tuple[float, float] = (120.0, 900.0)   # from a ticket waiting to the desk acting on it
    review_s: tuple[float, float] = (60.0, 600.0)   # one review step
    reroute_share: float = 0.6                       # of returns, where the trade has another unit
    approve_return_share: float = 0.3                # of returns: approved (then sent on from the pool)
    approve_extension_share: float = 0.85
    poll_s: float = 3.0


class DeskBot(_Bot):
    """The center's desk: 交办, the review steps, and the decisions on a unit's requests."""

    def __init__(self, apis: Mapping[str, Account], *, reroute: Mapping[str, Sequence[str]] | None = None,
                 crewless: Iterable[str] = (), speedup: float = 1.0, habits: DeskHabits = DeskHabits(),
                 rng: random.Random | None = None, clock: Callable[[], float] | None = None):
        """``apis``: role -> the account acting in it (``dispatcher`` required;
        ``supervisor`` for extensions; ``agent`` for consultations saved without an answer; a
        reviewer role's account for its review steps);
        ``reroute``: unit -> other units of its trade; ``crewless``: trades without field crews,
        whose station tickets the desk sends to the station."""
        super().__init__("desk", speedup, rng, clock)
        if "dispatcher" not in apis:
            raise ValueError("the desk needs the dispatcher's account")
        self.apis, self.habits = dict(apis), habits
        self.reroute = {k: list(v) for k, v in (reroute or {}).items()}
        self.crewless = frozenset(crewless)
        self._due: dict[tuple[str, int, str], float] = {}
        self._send_on: dict[str, str] = {}  # returns approved: ticket -> the unit it goes to next

    def _is_due(self, ticket: Mapping[str, Any], role: str, bounds: tuple[float, float], seen: set) -> bool:
        key = (ticket["number"], ticket["version"], role)
        seen.add(key)
        return self._due.setdefault(key, self.later(bounds)) <= self._clock()

    def leaves_center(self, ticket: Mapping[str, Any]) -> bool:
        """Whether the desk sends this pooled ticket to its unit: routed to a department, or a
        station ticket of a trade without crews."""
        route = ticket.get("route")
        return route == "department" or (route == "station" and ticket.get("category") in self.crewless)

    async def poll(self) -> int:
        """One round over the pool, the review steps and the pending requests; actions done."""
        get = self.apis["dispatcher"].get
        seen: set = set()
        done = 0
        for ticket in await self.listing(get, POOL + INBOX):
            request = ticket.get("request") or {}
            if ticket["state"] in POOL and ticket.get("route") == "answer" and "agent" in self.apis:
                if self._is_due(ticket, "agent", self.habits.delay_s, seen):
                    done += await self.answer(ticket)
            elif ticket["state"] in POOL and self.leaves_center(ticket) and ticket.get("unit_id"):
                if self._is_due(ticket, "dispatcher", self.habits.delay_s, seen):
                    done += await self.send_out(ticket)
            elif request.get("kind") == "return" and self._is_due(ticket, "dispatcher", self.habits.delay_s, seen):
                done += await self.decide_return(ticket)
            elif request.get("kind") == "extension" and "supervisor" in self.apis \
                    and self._is_due(ticket, "supervisor", self.habits.delay_s, seen):
                done += await self.decide_extension(ticket)
        done += await self.review(seen)
        self._due = {key: due for key, due in self._due.items() if key in seen}
        return done

    async def send_out(self, ticket: Mapping[str, Any]) -> int:
        """交办 to the ticket's unit (or, after an approved return, the unit chosen then)."""
        allowed = set(ticket.get("allowed_actions") or ())
        send = self.apis["dispatcher"].send
        if ticket.get("review_chain") and not ticket.get("review_passed") or "assign" not in allowed:
            if "submit_review" in allowed:  # its review chain first
                return int(await self.act(send, ticket, "submit_review", {}))
            return 0
        target = self._send_on.pop(ticket["number"], None)
        return int(await self.act(send, ticket, "assign", {"unit_id": target} if target else {}))

    async def answer(self, ticket: Mapping[str, Any]) -> int:
        """The agent answers a consultation saved without an answer (直接办结)."""
        trade = TRADE.get(ticket.get("category") or "", "公用事业")
        return int(await self.act(self.apis["agent"].send, ticket, "close_direct",
                                  {"answer": self._rng.choice(ANSWERS).format(trade=trade)}))

    async def decide_return(self, ticket: Mapping[str, Any]) -> int:
        """Re-route to another unit of the trade, approve (the ticket goes on from the pool) or refuse."""
        send = self.apis["dispatcher"].send
        others = self.reroute.get(ticket.get("unit_id") or "", [])
        roll = self._rng.random()
        if others and roll < self.habits.reroute_share:
            return int(await self.act(send, ticket, "reroute_return",
                                      {"unit_id": self._rng.choice(others), "reason": "经核实改派相关单位办理"}))
        if roll < self.habits.reroute_share + self.habits.approve_return_share:
            if others:
                self._send_on[ticket["number"]] = self._rng.choice(others)
            return int(await self.act(send, ticket, "approve_return", {"reason": "同意退回，中心重新派转"}))
        return int(await self.act(send, ticket, "refuse_return", {"reason": "经核实属你单位职责，请按时办理"}))

    async def decide_extension(self, ticket: Mapping[str, Any]) -> int:
        """The supervisor approves most extension requests and refuses the rest."""
        send = self.apis["supervisor"].send
        if self._rng.random() < self.habits.approve_extension_share:
            return int(await self.act(send, ticket, "approve_extension", {"reason": "同意延期，请在延期内办结"}))
        return int(await self.act(send, ticket, "refuse_extension", {"reason": "期限内可以办结，不同意延期"}))

    async def review(self, seen: set) -> int:
        """Each reviewer account approves the review steps waiting for its role (not its own tickets)."""
        done = 0
        for role, account in self.apis.items():
            if role not in REVIEWERS:
                continue
            for ticket in await self.listing(account.get, (role,), "review_role={}"):  # the role's queue
                if my_step(ticket, role, account.name) and self._is_due(ticket, role, self.habits.review_s, seen):
                    done += await self.act(account.send, ticket, "approve_review", {})
        return done

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set."""
        await poll_until(stop, self.poll, self.habits.poll_s, "desk bot")
