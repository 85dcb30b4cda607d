"""The KPI report as tables with Chinese headers and units, written as CSV or Excel (XLSX).

`report_tables` turns a report payload (`services.kpi_query.report_payload`) and the brief rows
of the tickets behind it into titled tables; `to_csv` writes them one after another (UTF-8 with
BOM, so Excel opens the Chinese text), `to_xlsx` one sheet each (openpyxl). Durations are shown
in minutes and rates in percent, rounded half up to one decimal by `minutes` and `percent`
(the report page, static/js/reports.js, rounds the same way); times in the center's time zone.
Caller phones arrive already masked (the handler masks them); this module never sees a raw one.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

CATEGORY_ZH = {"water": "供水", "power": "供电", "gas": "燃气", "heating": "供热", "drainage": "排水",
               "sanitation": "环卫", "other": "其他"}
CHANNEL_ZH = {"phone": "电话", "web": "网站", "sms": "短信", "police_110": "110转入", "sensor": "监测告警"}
TYPE_ZH = {"repair": "报修", "complaint": "投诉", "consultation": "咨询", "suggestion": "建议",
           "praise": "表扬", "service": "服务申请"}
STATE_ZH = {"new": "新建", "reviewed": "已审核", "dispatched": "已派单", "accepted": "已接单",
            "en_route": "在途", "on_site": "已到场", "resolved": "已处理", "callback": "待回访",
            "closed": "已办结", "declined": "已拒单", "returned": "已退单", "reopened": "返工",
            "transferred": "已转办", "cancelled": "已撤销", "merged": "已合并"}
COLOR_ZH = {"red": "红色", "orange": "橙色", "blue": "蓝色"}
STAGE_ZH = {"dispatch": "派单", "accept": "接单", "arrive": "到位", "resolve": "办结", "callback": "回访"}
TIME_ZH = {"dispatch_time_s": "派单时间", "acceptance_time_s": "接单时间", "arrival_time_s": "到位时间",
           "repair_time_s": "修复时间", "resolution_time_s": "办结时间",
           "callback_time_s": "回访时间"}
GROUP_ZH = {"category": "类别", "district": "区", "unit": "责任单位", "crew": "班组"}
KIND_ZH = {"day": "日报", "week": "周报", "month": "月报", "year": "年报"}
RANGE_ZH = "区间报表"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_BEIJING_ZONES = frozenset({"Asia/Shanghai", "Asia/Chongqing", "Asia/Harbin", "PRC"})


@dataclass(frozen=True)
class Table:
    """A titled table: header labels (with units) and rows of cells."""

    title: str
    headers: tuple[str, ...]
    rows: list[list[Any]]


def minutes(seconds: float | None) -> float | None:
    """Seconds as minutes, rounded half up to 0.1 (None stays None)."""
    return None if seconds is None else math.floor(seconds / 60.0 * 10.0 + 0.5) / 10.0


def percent(share: float | None) -> float | None:
    """A 0..1 share as percent, rounded half up to 0.1 (None stays None)."""
    return None if share is None else math.floor(share * 1000.0 + 0.5) / 10.0


def _name(names: Mapping[str, str], key: str) -> str:
    return f"{key} {names[key]}" if key in names else key


def _summary(r: dict[str, Any]) -> Table:
    v, i, t, o, q = r["volume"], r["intake"], r["times"], r["on_time"], r["quality"]
    rows: list[list[Any]] = [
        ["受理工单", v["tickets"], "张"], ["办结工单", v["resolved"], "张"],
        ["重复来电工单", i["repeat_tickets"], "张"], ["重复来电率", percent(i["repeat_call_rate"]), "%"],
        ["红色督办工单", i["red_tickets"], "张"], ["红单占比", percent(i["red_share"]), "%"],
        ["橙色预警工单", i["orange_tickets"], "张"], ["橙单占比", percent(i["orange_share"]), "%"],
        ["当场办结", i["closed_on_call_tickets"], "张"], ["未办结", i["open_tickets"], "张"],
        ["110联动", i["police_linkage_count"], "次"], ["转110", i["police_handover_tickets"], "张"],
        ["110转入", i["police_transfer_in_tickets"], "张"],
        ["110平均确认时间", minutes(i["police_ack_s_mean"]), "分钟"],
    ]
    rows += [[f"平均{label}", minutes(t[f"{key}_mean"]), "分钟"] for key, label in TIME_ZH.items()]
    rows += [[f"{label}准时率", percent(o[f"{stage}_on_time_rate"]), "%"] for stage, label in STAGE_ZH.items()]
    rows += [["一次修复率", percent(q["first_time_fix_rate"]), "%"], ["返工率", percent(q["reopen_rate"]), "%"],
             ["回访完成率", percent(q["callback_completion_rate"]), "%"], ["满意率", percent(q["satisfaction_rate"]), "%"]]
    return Table("汇总", ("指标", "数值", "单位"), rows)


def _volume_tables(r: dict[str, Any], names: Mapping[str, Mapping[str, str]]) -> list[Table]:
    v = r["volume"]
    tables = [Table("按日", ("日期", "受理(张)", "办结(张)"), [[d["day"], d["created"], d["resolved"]] for d in r["series"]]),
              Table("按小时", ("小时", "受理(张)"), [[f"{h:02d}:00", n] for h, n in enumerate(v["by_hour"])])]
    for key, title, labels in (("channel", "按渠道", CHANNEL_ZH), ("category", "按类别", CATEGORY_ZH),
                               ("type", "按类型", TYPE_ZH)):
        tables.append(Table(title, (title[1:], "受理(张)"), [[labels.get(k, k), n] for k, n in v[f"by_{key}"].items()]))
    for key, title in (("district", "按区"), ("unit", "按责任单位")):
        tables.append(Table(title, (GROUP_ZH[key], "受理(张)"),
                            [[_name(names.get(key, {}), k), n] for k, n in sorted(v[f"by_{key}"].items())]))
    return tables


def _time_tables(r: dict[str, Any], names: Mapping[str, Mapping[str, str]]) -> list[Table]:
    heads = ("样本数(张)", "平均(分钟)", "中位数(分钟)", "P90(分钟)")
    t = r["times"]
    rows = [[label, t[f"{key}_count"], minutes(t[f"{key}_mean"]), minutes(t[f"{key}_median"]),
             minutes(t[f"{key}_p90"])] for key, label in TIME_ZH.items()]
    by_rows = []
    for group, table in r["times_by"].items():
        for key, values in sorted(table.items()):
            label = CATEGORY_ZH.get(key, key) if group == "category" else _name(names.get(group, {}), key)
            for metric, stage in TIME_ZH.items():
                if values.get(f"{metric}_count"):
                    by_rows.append([GROUP_ZH[group], label, stage, values[f"{metric}_count"],
                                    minutes(values[f"{metric}_mean"]), minutes(values[f"{metric}_median"]),
                                    minutes(values[f"{metric}_p90"])])
    o = r["on_time"]
    on_time = [[label, o[f"{s}_on_time_due"], o[f"{s}_on_time_met"], percent(o[f"{s}_on_time_rate"])]
               for s, label in STAGE_ZH.items()]
    return [Table("环节时长", ("环节", *heads), rows), Table("分组时长", ("维度", "名称", "环节", *heads), by_rows),
            Table("准时率", ("环节", "应考核(张)", "准时(张)", "准时率(%)"), on_time)]


def _quality(r: dict[str, Any]) -> Table:
    q = r["quality"]
    rows = [["办结工单", q["resolved"], "张"], ["一次修复", q["first_time_fix"], "张"], ["返工", q["reopened"], "张"],
            ["应回访", q["callback_due"], "张"], ["已回访", q["callback_done"], "张"], ["满意", q["satisfied"], "张"],
            ["基本满意", q["basically_satisfied"], "张"], ["不满意", q["dissatisfied"], "张"],
            ["未接通", q["unreachable"], "张"], ["一次修复率", percent(q["first_time_fix_rate"]), "%"],
            ["返工率", percent(q["reopen_rate"]), "%"], ["回访完成率", percent(q["callback_completion_rate"]), "%"],
            ["满意率", percent(q["satisfaction_rate"]), "%"]]
    return Table("服务质量", ("指标", "数值", "单位"), rows)


RANKING_HEADERS = ("名次", "{group}", "受理(张)", "办结(张)", "平均到位时间(分钟)", "P90到位时间(分钟)",
                   "平均修复时间(分钟)", "超时工单(张)", "一次修复(张)", "返工(张)", "已回访(张)", "满意(张)",
                   "准时率(%)", "一次修复率(%)", "返工率(%)", "满意率(%)", "考核得分(分)")


def _ranking(rows: list[dict[str, Any]], group: str, names: Mapping[str, str]) -> Table:
    out = [[x["rank"], _name(names, x[f"{group}_id"]), x["tickets"], x["resolved"], minutes(x["arrival_time_s_mean"]),
            minutes(x["arrival_time_s_p90"]), minutes(x["repair_time_s_mean"]), x["late_tickets"], x["first_time_fix"],
            x["reopened"], x["callbacks_done"], x["satisfied"], percent(x["on_time_rate"]),
            percent(x["first_time_fix_rate"]), percent(x["reopen_rate"]), percent(x["satisfaction_rate"]),
            None if x["score"] is None else math.floor(x["score"] * 10 + 0.5) / 10]
           for x in rows]
    headers = tuple(h.format(group=GROUP_ZH[group]) for h in RANKING_HEADERS)
    return Table(f"{GROUP_ZH[group]}排名", headers, out)


def _local(value: str | None, tz: tzinfo) -> str | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _tickets(rows: Sequence[Mapping[str, Any]], tz: tzinfo, total: int) -> Table:
    out = [[t["number"], _local(t["created"], tz), _local(t["resolved"], tz),
            CHANNEL_ZH.get(t["channel"], t["channel"]),
            CATEGORY_ZH.get(t["category"], t["category"]), TYPE_ZH.get(t["type"], t["type"]), t["district"],
            t["unit"], t["crew"], STATE_ZH.get(t["state"], t["state"]), COLOR_ZH.get(t["color"], t["color"]),
            t["phone"]] for t in rows]
    if total > len(rows):
        out.append([f"（共 {total} 张，仅列出最新 {len(rows)} 张）"] + [None] * 11)
    zone = "北京时间" if str(tz) in _BEIJING_ZONES else str(tz)
    heads = ("工单号", f"受理时间({zone})", f"办结时间({zone})", "渠道", "类别", "类型", "区", "责任单位", "班组",
             "状态", "督办等级", "来电号码(脱敏)")
    return Table("工单明细", heads, out)


def report_tables(payload: Mapping[str, Any], tickets: Sequence[Mapping[str, Any]], *, tz: tzinfo,
                  names: Mapping[str, Mapping[str, str]] | None = None, total: int | None = None) -> list[Table]:
    """Every table of the report and the tickets behind it (`names`: id → name per group)."""
    names = names or {}
    r = payload["report"]
    return [_summary(r), *_volume_tables(r, names), *_time_tables(r, names), _quality(r),
            _ranking(r["rankings"]["unit"], "unit", names.get("unit", {})),
            _ranking(r["rankings"]["crew"], "crew", names.get("crew", {})),
            _tickets(tickets, tz, len(tickets) if total is None else total)]


def title_of(payload: Mapping[str, Any]) -> str:
    """The report's title, e.g. ``调度指挥中心月报 2026-11-01 至 2026-11-30``."""
    period = payload["period"]
    start = period["start"][:10]
    end = (datetime.fromisoformat(period["end"]).date() - timedelta(days=1)).isoformat()
    return f"调度指挥中心{KIND_ZH.get(period['kind'], RANGE_ZH)} {start} 至 {end}"


def _filters_line(payload: Mapping[str, Any]) -> str:
    f = payload["report"]["filters"]
    parts = [f"{GROUP_ZH[k]}：{v if isinstance(v, str) else '、'.join(v)}" for k, v in f.items() if v]
    return "筛选：" + ("；".join(parts) if parts else "全部")


def to_csv(payload: Mapping[str, Any], tables: Sequence[Table]) -> bytes:
    """Every table one after another: a 【title】 row, the header row, the rows, a blank row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([title_of(payload)])
    writer.writerow([_filters_line(payload)])
    writer.writerow([])
    for table in tables:
        writer.writerow([f"【{table.title}】"])
        writer.writerow(table.headers)
        writer.writerows([["" if c is None else c for c in row] for row in table.rows])
        writer.writerow([])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(payload: Mapping[str, Any], tables: Sequence[Table]) -> bytes:
    """One sheet per table (header row first; the summary sheet starts with title and filters)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    bold = Font(bold=True)
    for index, table in enumerate(tables):
        sheet = book.create_sheet(table.title[:31])
        if index == 0:
            sheet.append([title_of(payload)])
            sheet.append([_filters_line(payload)])
        header = []
        for label in table.headers:
            cell = WriteOnlyCell(sheet, value=label)
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        for row in table.rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
