"""The demo's call mix: which trade and ticket type a background call is, in what words, and how
many calls a day the city's crews can keep up with.

Where the shares come from (an estimate). The seed documents cited in issue #23 (Qingdao 12319's
closed loop, Beijing 12320, Guangzhou 12345, Gaomi 95598) name the ticket types (咨询, 服务, 投诉,
表扬, 建议, 抢修) and how each is handled (consultations on common knowledge or policy are answered
on the call and archived); the issue reads them as "most calls to a 12319-like line are
consultations answered on the call; repairs a minority". None of them gives counts: the tables
below are our estimate of such a line, the power line (95598) included:

==============  =====  =====================================================================
type            share  what happens
==============  =====  =====================================================================
consultation    ~59 %  咨询: answered on the call (``answer``), a few saved for a later answer
service         ~11 %  服务: the 三级 station, a field crew (or the station itself, no crews)
repair          ~14 %  抢修: the 三级 station, a field crew
complaint       ~10 %  投诉: the 二级 unit, through its review chain
suggestion       ~3 %  建议: the 二级 unit
praise           ~2 %  表扬: the 二级 unit
==============  =====  =====================================================================

The shares differ per trade (``TYPE_SHARES``: power has more repairs, sanitation more complaints,
the fees line 公用事业 almost only consultations); ``tests/test_sim_callers.py`` checks the
marginals above from the tables and from a seeded simulated day. Trades are weighted by
``TRADE_SHARES`` (power and water carry most calls; heating is in season in the demo's winter).

How many calls a day (``sized_daily_calls``): only service and repair tickets take a field crew,
and most calls come in the day: the 10 busiest hours of the daily curve (``HOURLY``, 8–18 h)
carry 70.5 % of them (``BUSY_HOURS``). A crew's job costs it, in simulated seconds, its human
times (``CrewTiming``: accept 30–120 s, depart 30–180 s, on site 900–2,700 s; 1,980 s on
average), the drive and the bots' own wall time. The drive is ``TYPICAL_DRIVE_S`` (480 s: on the
demo city's roads the nearest crew of a trade is a median 250 s from an address and one address
another 375 s, plus a quarter for accelerating and junctions; 516 s measured) and takes
``speedup / drive_speedup`` times longer in simulated time when the vehicles drive slower than the
simulated clock runs: with ``CLOCK_SPEEDUP`` 1 they drive in real time while the people's delays
run at ``SIM_SPEEDUP``. The bots' polling and HTTP round trips cost ``CREW_OVERHEAD_WALL_S`` (6 s)
of wall time a job, that many times the speed-up in simulated seconds (measured: ten simulated hours
of the demo at 96x, ``bench.demo_day``, took 2,990 simulated s a job against 2,460 of human times
and drive, while the crew bots still looked at their assignments every 2 wall s; they now look
more often on a fast clock, so the figure errs on the safe side). So a job is 1,980 + 480 + 6 x 96
= 3,036 s at 96x with the vehicles on the clock (11.9 jobs per crew in the 10 busy hours), and 1,980 + 480 x 20 + 6 x 20 = 11,700 s at
``SIM_SPEEDUP`` 20 with real-time driving (3.1 jobs). Each crew counts towards each of its skills
(1/n of it for n skills); the trade whose crews would be the busiest sets the volume so that its
field jobs in the busy hours are ``CREW_LOAD`` (65 %) of what its crews can do then (its busiest
hour ~80 %), the other trades' 58–65 %: ~950 calls a day at 96x on the clock, ~250 at 20x with
real-time driving (the default demo). Over the whole day the crews are then ~36 % busy: the night
is quiet. Storm scenarios raise the rate with their multiplier and overload the crews on purpose.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol, Sequence

TYPES = ("consultation", "service", "repair", "complaint", "suggestion", "praise")
FIELD_TYPES = ("service", "repair")  # the types routed to a station, whose tickets take a field crew
TRADE_SHARES = {"water": 0.25, "power": 0.32, "gas": 0.10, "heating": 0.07, "drainage": 0.06,
                "sanitation": 0.08, "other": 0.12}
# share of each type (in the order of TYPES) within a trade's calls
TYPE_SHARES = {
    "water":      (0.62, 0.10, 0.13, 0.08, 0.04, 0.03),
    "power":      (0.57, 0.09, 0.20, 0.09, 0.03, 0.02),
    "gas":        (0.57, 0.18, 0.13, 0.07, 0.03, 0.02),
    "heating":    (0.53, 0.14, 0.18, 0.10, 0.03, 0.02),
    "drainage":   (0.48, 0.12, 0.24, 0.10, 0.04, 0.02),
    "sanitation": (0.49, 0.18, 0.04, 0.22, 0.04, 0.03),
    "other":      (0.81, 0.06, 0.02, 0.06, 0.03, 0.02),
}
ANSWERED_SHARE = 0.9   # consultations the agent answers on the call; the rest wait for the desk's answer
CREW_LOAD = 0.65       # the busiest trade's field jobs in the busy hours, as a share of what its crews can do
BUSY_HOURS = 10        # the day's busiest hours, in which the crews' load is planned
TYPICAL_DRIVE_S = 480.0
CREW_OVERHEAD_WALL_S = 6.0  # wall seconds a job costs the bots (polling, HTTP round trips)
HOUR_S = 3600.0
# Relative call volume per local hour (0..23) of the 12319 line.
HOURLY = (0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.35, 0.90, 1.60, 1.95, 1.90, 1.60,
          1.10, 1.20, 1.60, 1.75, 1.60, 1.40, 1.10, 1.00, 0.90, 0.70, 0.50, 0.35)
REAL_LINE_DAILY_CALLS = 3300.0  # the 12319 line's average day, for a city without crews to size by

# 咨询: (question, the agent's answer on the call)
CONSULTATIONS = {
    "water": (("想问一下水费怎么在网上交", "可以通过“城市水务”微信公众号、支付宝生活缴费或各营业厅缴纳水费"),
              ("阶梯水价是怎么算的", "居民用水按年度阶梯计价，第一阶梯每年180吨以内，超出部分按第二阶梯价格计费"),
              ("新房子要开户装水表，需要带什么材料", "请携带房产证、身份证原件到供水营业厅办理开户，工作人员会预约上门装表"),
              ("明天我们小区是不是要停水", "经查询，明天9时至17时该片区因管网维修计划停水，请提前储水")),
    "power": (("电费怎么查询，每个月几号扣费", "可在“网上国网”App或供电营业厅查询电费，每月月初按抄表电量结算扣费"),
              ("峰谷电价怎么申请", "可在“网上国网”App申请峰谷分时电价，次月抄表周期起执行"),
              ("家里要加装充电桩，怎么报装", "请在“网上国网”App提交充电桩报装申请，附物业同意书和车位证明"),
              ("刚才停了一会儿电，是计划停电吗", "经查询，该线路今天上午有计划检修，已于11时恢复送电")),
    "gas": (("燃气卡充值以后表上没显示", "请将燃气卡插入表具保持十秒钟，表上显示金额后再拔卡；仍不显示请到营业厅读卡"),
            ("燃气费可以在手机上交吗", "可以通过燃气公司微信公众号或支付宝生活缴费缴纳，充值后需插卡写表"),
            ("燃气安检什么时候上门", "燃气公司每年对居民用户入户安检一次，安检人员会提前张贴通知并出示工作证"),
            ("燃气报警器有必要装吗", "建议安装燃气报警器和自闭阀，可向燃气公司咨询正规产品和安装服务")),
    "heating": (("今年供暖从哪天开始", "今年供暖期为11月15日至次年3月31日，管网已于11月10日开始注水试压"),
                ("暖气费标准是多少，怎么交", "居民供热按建筑面积每平方米每月收费，可在供热公司营业厅或公众号缴纳"),
                ("家里不想供暖了，怎么办停供", "申请停供需在供暖季开始前到供热营业厅办理，停供需缴纳基本热费"),
                ("暖气片可以自己改装吗", "私自改装暖气会影响系统平衡，请联系供热公司预约，由专业人员施工")),
    "drainage": (("小区化粪池归谁管", "小区内化粪池由物业负责清掏，市政道路下的排水设施由排水管理处负责"),
                 ("家里装修要接排水管，需要审批吗", "接入市政排水管网需向排水管理处申请排水许可，附施工图纸"),
                 ("下雨天路上积水一般多久能排完", "一般降雨停止后一小时内排完；积水严重时请拨打本热线报修")),
    "sanitation": (("大件垃圾怎么处理", "大件垃圾可预约环卫部门上门收运，或送到社区大件垃圾临时堆放点"),
                   ("垃圾分类怎么分，厨余垃圾放哪个桶", "厨余垃圾投放绿色桶，可回收物投放蓝色桶，有害垃圾投放红色桶，其他垃圾投放灰色桶"),
                   ("装修垃圾可以直接放在楼下吗", "装修垃圾需袋装后堆放到物业指定地点，由有资质的单位清运，不能混入生活垃圾")),
    "other": (("公用事业的费用能不能一起交", "可通过市民服务App的“生活缴费”一次缴纳水、电、燃气、暖气费用"),
              ("过户以后水电燃气要一起过户吗", "需要分别到供水、供电、燃气营业厅办理过户，携带新房产证和身份证"),
              ("你们热线都管哪些事情", "本热线受理供水、供电、燃气、供热、排水、环卫等公用事业的咨询、报修、投诉和建议"),
              ("营业厅周末上班吗", "各营业厅周六上午正常营业，周日和法定节假日可通过网上渠道办理业务")),
}
# 抢修: (description, urgency)
REPAIRS = {
    "water": (("家里突然停水了，也没看到停水通知", "urgent"), ("水龙头出来的水发黄，有铁锈味", "normal"),
              ("楼下路边水管漏水，水一直往外冒", "urgent"), ("水表井盖坏了，有人差点踩空", "normal")),
    "power": (("家里停电了，邻居家也没电", "urgent"), ("小区路灯不亮好几天了", "normal"),
              ("楼道电表箱冒烟，有焦糊味", "urgent"), ("电线被树枝压着，风一吹就晃", "normal")),
    "gas": (("燃气灶打不着火，燃气表显示正常", "normal"), ("燃气表走字不正常，没用气也在走", "normal"),
            ("楼外燃气管道的防腐层脱落了", "normal")),
    "heating": (("暖气不热，屋里只有十五度", "normal"), ("暖气片漏水，把地板泡了", "urgent"),
                ("整栋楼暖气都不热了", "urgent")),
    "drainage": (("下水道堵了，污水返到院子里", "urgent"), ("雨水篦子堵了，一下雨就积水", "normal"),
                 ("路上的井盖丢了，很危险", "urgent"), ("污水井往外冒水，味道很大", "normal")),
    "sanitation": (("路边垃圾桶坏了，垃圾撒了一地", "normal"), ("公共厕所水箱坏了，一直在漏水", "normal")),
    "other": (("公交站亭的玻璃碎了", "normal"), ("路边的消防栓被撞歪了", "normal")),
}
# 服务, 投诉, 建议, 表扬: descriptions (urgency normal)
REQUESTS = {
    ("water", "service"): ("想预约上门换一个新水表", "水表被冻了，请安排人上门看看", "申请水质检测，想知道自来水能不能直接喝"),
    ("water", "complaint"): ("停水前没有任何通知，家里老人做不了饭", "这个月水费比平时多了一倍，怀疑抄错表了",
                             "维修人员挖开路面后一直没回填"),
    ("water", "suggestion"): ("建议停水通知提前在业主群里发", "建议营业厅增加晚上的服务时间"),
    ("water", "praise"): ("上次抢修的师傅半夜赶过来，特别负责，表扬一下", "营业厅的工作人员很耐心，帮我办完了过户"),
    ("power", "service"): ("申请更换智能电表", "想预约上门检查一下家里的线路", "新装修的房子申请增容"),
    ("power", "complaint"): ("这个月电压老是不稳，灯一闪一闪的", "抄表员态度很差，还乱估电量", "一个月停了三次电，也没通知"),
    ("power", "suggestion"): ("建议计划停电的通知用短信发给每户", "建议小区里多装几个充电桩"),
    ("power", "praise"): ("供电所的师傅冒雨帮我们恢复了供电，非常感谢", "客服帮我查清了电费问题，很专业"),
    ("gas", "service"): ("新房子申请开通燃气", "想预约燃气安检", "燃气灶要挪位置，申请改管"),
    ("gas", "complaint"): ("安检人员上门推销报警器，不买还不高兴", "燃气表换了以后每月用量多了很多"),
    ("gas", "suggestion"): ("建议燃气卡可以在手机上直接写卡", "建议安检前一天电话通知"),
    ("gas", "praise"): ("燃气公司的师傅来得很快，漏气问题处理得很好", "安检员讲解得很仔细，表扬"),
    ("heating", "service"): ("暖气需要放气，请安排人上门", "申请恢复供暖", "想预约上门测室温"),
    ("heating", "complaint"): ("交了暖气费，屋里温度一直不达标", "维修人员说好上门，等了一天也没来"),
    ("heating", "suggestion"): ("建议降温的时候提前提高供水温度", "建议公布每个小区的供热温度"),
    ("heating", "praise"): ("供热站的师傅很负责，反复来调了好几次", "今年暖气特别热，感谢供热公司"),
    ("drainage", "service"): ("化粪池满了，申请清掏", "申请疏通小区外面的排水管道", "想预约检查一下雨水管"),
    ("drainage", "complaint"): ("施工队把泥浆直接排进雨水井", "报修积水好几天了还没人来处理"),
    ("drainage", "suggestion"): ("建议在这个路口加装雨水口", "建议汛期前把这条路的雨水管清一遍"),
    ("drainage", "praise"): ("排水处的工人大雨里疏通管道，很辛苦，表扬他们", "积水处理得很及时，谢谢"),
    ("sanitation", "service"): ("申请上门收运大件垃圾", "小区门口需要加一个垃圾桶", "申请清理楼后的建筑垃圾"),
    ("sanitation", "complaint"): ("垃圾几天没人清运了，味道很大", "环卫车每天早上五点就来，噪音太大",
                                  "垃圾中转站污水流到路上"),
    ("sanitation", "suggestion"): ("建议在公园里多放几个分类垃圾桶", "建议垃圾清运避开早高峰"),
    ("sanitation", "praise"): ("我们这条街的保洁员每天打扫得很干净，表扬一下", "环卫工人雪后很早就来扫雪了"),
    ("other", "service"): ("想开一份缴费证明", "申请把几项缴费绑定到一个账户"),
    ("other", "complaint"): ("热线打了好几次都占线", "营业厅排队时间太长，窗口开得太少"),
    ("other", "suggestion"): ("建议在小区门口增设一个公交站", "建议热线增加微信留言的渠道"),
    ("other", "praise"): ("热线接线员很耐心，问题一次就说清楚了", "营业厅的服务很好，表扬一下"),
}


@dataclass(frozen=True)
class CallKind:
    """What one call is about: trade, type, urgency, the caller's words and, for a consultation
    answered on the call, the agent's answer."""

    category: str
    type: str
    urgency: str
    description: str
    answer: str | None = None


def draw(rng: random.Random, answered_share: float = ANSWERED_SHARE) -> CallKind:
    """A background call of the mix: a trade, a type within it, words for both."""
    category = rng.choices(list(TRADE_SHARES), weights=list(TRADE_SHARES.values()))[0]
    kind = rng.choices(TYPES, weights=TYPE_SHARES[category])[0]
    if kind == "consultation":
        question, answer = rng.choice(CONSULTATIONS[category])
        return CallKind(category, kind, "normal", question, answer if rng.random() < answered_share else None)
    if kind == "repair":
        text, urgency = rng.choice(REPAIRS[category])
        return CallKind(category, kind, urgency, text)
    return CallKind(category, kind, "normal", rng.choice(REQUESTS[(category, kind)]))


def type_shares() -> dict[str, float]:
    """Each type's share of all background calls, from the tables."""
    return {kind: sum(TRADE_SHARES[t] * TYPE_SHARES[t][i] for t in TRADE_SHARES) for i, kind in enumerate(TYPES)}


def field_shares() -> dict[str, float]:
    """Per trade, the share of all background calls that become a field job (service, repair)."""
    field = [TYPES.index(kind) for kind in FIELD_TYPES]
    return {trade: TRADE_SHARES[trade] * sum(TYPE_SHARES[trade][i] for i in field) for trade in TRADE_SHARES}


class Timing(Protocol):
    """A crew's human times in simulated seconds (``simulators.crews.CrewTiming``)."""

    accept_s: tuple[float, float]
    depart_s: tuple[float, float]
    repair_s: tuple[float, float]


def busy_share(curve: Sequence[float] = HOURLY, hours: int = BUSY_HOURS) -> float:
    """The share of a day's calls that come in its ``hours`` busiest hours."""
    return sum(sorted(curve)[-hours:]) / sum(curve)


def job_seconds(timing: Timing, *, speedup: float, drive_speedup: float = 1.0,
                drive_s: float = TYPICAL_DRIVE_S, overhead_wall_s: float = CREW_OVERHEAD_WALL_S) -> float:
    """Simulated seconds a crew spends on one field job: the mean human times, a typical drive
    (``speedup / drive_speedup`` times longer when the vehicles drive slower than the simulated
    clock runs; ``drive_speedup`` 1: in real time) and the bots' wall-time overhead."""
    if speedup <= 0 or drive_speedup <= 0:
        raise ValueError("speed-ups must be positive")
    human = sum(sum(bounds) / 2 for bounds in (timing.accept_s, timing.depart_s, timing.repair_s))
    return human + drive_s * speedup / drive_speedup + overhead_wall_s * speedup


def crews_by_trade(skills: Iterable[Sequence[str]]) -> dict[str, float]:
    """Crew-equivalents per trade: a crew with n skills counts 1/n towards each."""
    out: dict[str, float] = {}
    for crew in skills:
        trades = [s.strip() for s in crew if s.strip()]
        for trade in trades:
            out[trade] = out.get(trade, 0.0) + 1.0 / len(trades)
    return out


def crew_load(crews: Mapping[str, float], job_s: float, daily_calls: float) -> dict[str, float]:
    """Per trade with crews: its field jobs in the busy hours at ``daily_calls`` over what its
    crews can do in those hours."""
    if job_s <= 0:
        raise ValueError("a job takes a positive time")
    field, busy = field_shares(), busy_share()
    return {trade: daily_calls * busy * field.get(trade, 0.0) / (count * BUSY_HOURS * HOUR_S / job_s)
            for trade, count in crews.items() if count > 0}


def sized_daily_calls(crews: Mapping[str, float], job_s: float, *, load: float = CREW_LOAD) -> float:
    """Background calls a day such that the busiest trade's field jobs in the busy hours take
    ``load`` of what its crews can do then (trades without crews are the stations' own work and
    do not count); a city without crews gets the real line's volume."""
    if not 0 < load <= 1:
        raise ValueError("the load is within 0..1")
    loads = {trade: share for trade, share in crew_load(crews, job_s, 1.0).items() if share > 0}
    return load / max(loads.values()) if loads else REAL_LINE_DAILY_CALLS
