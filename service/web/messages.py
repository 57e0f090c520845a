"""Alarm messages and subjects for people, in the page's language, from an alarm's type and values.

The core writes an English `message` for logs and the API; the dashboard does not show it. It
renders its own sentence from the alarm type, the subject (named as the site file names it) and
the alarm's `value`, with the limit the site applies, so the Chinese page reads Chinese.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from service.alarms.rules import ALARM_TYPES
from service.config.compliance import GENERATOR_MARGIN
from service.config.site import Site

Translate = Callable[..., str]

# alarm type -> i18n key of its sentence (from the alarm-type table); the sentence may use {subject},
# {value} and {limit}. A type may add `<key>.none`, the sentence for an alarm without a value.
SENTENCES: Final[Mapping[str, str]] = {s.type.value: s.sentence_key for s in ALARM_TYPES}


def subject_name(site: Site, subject: str, t: Translate) -> str:
    """What a person calls an alarm subject: the site's name, a room's name, a device with its room."""
    if subject == site.site.id:
        return t("subject.site", name=site.site.name)
    room = next((r for r in site.rooms if r.id == subject), None)
    if room is not None:
        return room.name
    named = {d.id: d.name for d in site.departments}
    if subject in named:
        return named[subject]
    holder = site.room_of(subject)
    return t("subject.device_in_room", id=subject, room=holder.name) if holder is not None else subject


def _num(value: float | str | None) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:,.1f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return "—" if value is None else str(value)


def _limit(site: Site, kind: str, subject: str) -> float | None:
    room = next((r for r in site.rooms if r.id == subject), None)
    th = site.thresholds_of(room) if room is not None else site.site.thresholds
    limits: dict[str, float] = {
        "ac_too_cold": th.cooling_min_c,
        "ac_heating_too_warm": th.heating_max_c,
        "high_power_appliance": th.plug_max_w,
        "source_transfer_failed": site.site.allowed_interruption_s,
        "lit_empty_room": th.empty_room_delay_s,
        "ac_door_open": th.door_open_delay_s,
        "lit_in_daylight": th.daylight_lux,
        "security_load_exceeded": round(100.0 / GENERATOR_MARGIN, 2),
    }
    if kind == "generator_start_failed":
        gen = next((g for g in site.generators if g.id == subject), None)
        return gen.start_limit_s if gen is not None else None
    return limits.get(kind)


def alarm_message(site: Site, kind: str, subject: str, value: float | str | None, t: Translate) -> str:
    """One sentence about an alarm in the page's language (type label and subject for unknown types)."""
    name = subject_name(site, subject, t)
    key = SENTENCES.get(kind)
    if key is None:
        label = t("type." + kind, default=kind)
        return f"{label} · {name}" + (f" · {_num(value)}" if value is not None else "")
    if value is None and t(f"{key}.none", default=""):
        key = f"{key}.none"
    limit = _limit(site, kind, subject)
    shown = t("ctlmode." + value, default=value) if isinstance(value, str) else _num(value)
    return t(key, subject=name, value=shown, limit=_num(limit))


def change_text(value: object, site: Site, t: Translate, when: Callable[[str], str]) -> str:
    """An audit record's old or new value for people: on/off, modes, room names, local times."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return t("observed.on") if value else t("observed.off")
    if isinstance(value, dict):
        return "，".join(
            f"{t('field.' + str(k), default=str(k))} {_field(k, v, site, t, when)}" for k, v in value.items()
        )
    if isinstance(value, str):
        return t("mode." + value, default=value)
    return _num(value) if isinstance(value, float | int) else str(value)


def _field(key: object, value: object, site: Site, t: Translate, when: Callable[[str], str]) -> str:
    if key == "room" and isinstance(value, str):
        return next((r.name for r in site.rooms if r.id == value), value)
    if key == "until" and isinstance(value, str):
        return when(value)
    if key == "occupied_rooms" and isinstance(value, str):
        return t("policy." + value, default=value)
    return change_text(value, site, t, when)


# The static compliance check (service.config.compliance) words its details in English; the Chinese page
# shows them from these patterns. A detail no pattern knows is shown as written.
_WORDS: Final[Mapping[str, str]] = {
    "cable": "电缆",
    "insulated_overhead": "绝缘架空线",
    "overhead": "架空线",
    "electrical": "电气",
    "mechanical": "机械",
    "none": "无",
    "special": "特级",
    "first": "一级",
    "second": "二级",
    "temporary": "临时性",
    "ordinary": "普通",
    "pole": "杆",
    "tower": "塔",
    "automatic": "自动",
    "manual": "手动",
}
# Whole values of a detail's fields (never parts of an id such as meter-grid-a).
_PHRASES: Final[Mapping[str, str]] = {
    "controller": "控制器",
    "meter": "电表",
    "generator": "发电机",
    "transfer switch": "切换开关",
    "commands need an admin and a reason": "命令须由管理员发出并说明理由",
    "never commanded": "从不下发命令",
    "set role supply (commands still need an admin and a reason)": "请将角色设为供电设备（命令仍须管理员并说明理由）",
    "supply": "供电设备",
    "critical": "重要负荷",
    "life_safety": "生命安全",
    "sensor": "传感器",
    "lighting": "照明",
    "hvac": "空调",
    "office_equipment": "办公设备",
}
_DETAILS: Final[tuple[tuple[str, str], ...]] = (
    (r"(?P<n>\d+) source\(s\); ungraded site", "{n} 路电源；未定级站点"),
    (
        r"(?P<n>\d+) source\(s\), (?P<grade>\w+) grade needs >= (?P<need>\d+)",
        "{n} 路电源，{grade}重要电力客户要求 ≥ {need} 路",
    ),
    (
        r"(?P<n>\d+) substation\(s\) \((?P<ids>[^)]*)\), needs >= (?P<need>\d+)",
        "{n} 个变电站（{ids}），要求 ≥ {need} 个",
    ),
    (
        r"(?P<n>\d+) substation\(s\); circuits on one substation use different bus sections",
        "{n} 个变电站；同一变电站的回路接在不同母线段",
    ),
    (r"(?P<n>\d+) substation\(s\)", "{n} 个变电站"),
    (r"circuits share a bus section: (?P<what>.*)", "回路共用母线段：{what}"),
    (r"capacity_kw not declared for (?P<ids>.*); check live", "未声明 capacity_kw：{ids}；请以实测为准"),
    (r"no peak_load_kw or security_load_kw to compare with", "未声明 peak_load_kw 或 security_load_kw，无法比较"),
    (
        r"with (?P<lost>\d+) source\(s\) lost the weakest left \((?P<id>[^)]*)\) has (?P<cap>[\d.]+) kW "
        r"for a (?P<load>[\d.]+) kW load",
        "失去 {lost} 路电源后，剩余最弱电源（{id}）容量 {cap} kW，负荷 {load} kW",
    ),
    (r"no line at <= 10 kV", "没有 10 kV 及以下线路"),
    (r"bare overhead line at <= 10 kV: (?P<ids>.*)", "10 kV 及以下有裸架空线：{ids}"),
    (r"no overhead circuit at <= 10 kV", "10 kV 及以下没有架空回路"),
    (r"fewer than two overhead sources at >= 35 kV", "35 kV 及以上的架空电源少于两路"),
    (
        r"one overhead circuit \((?P<id>[^)]*)\); no other circuit to share a (?P<what>\w+)",
        "只有一路架空回路（{id}），不存在同{what}架设",
    ),
    (r"two circuits on one (?P<what>\w+) line: (?P<detail>.*)", "两路回路同{what}架设：{detail}"),
    (
        r"support not declared for (?P<ids>.*): cannot show the (?P<n>\d+) overhead circuits "
        r"are on separate (?P<what>\w+)s",
        "未声明 support：{ids}；无法证明 {n} 路架空回路分{what}架设",
    ),
    (
        r"(?P<n>\d+) overhead circuits on separate (?P<what>\w+) lines: (?P<placed>.*)",
        "{n} 路架空回路分{what}架设：{placed}",
    ),
    (r"no generator; (?P<grade>\w+) grade requires one", "没有发电机；{grade}重要电力客户要求配置"),
    (r"none; not required for (?P<grade>\w+) grade", "无；{grade}重要电力客户不要求"),
    (r"(?P<n>\d+) generator\(s\): (?P<ids>.*)", "{n} 台发电机：{ids}"),
    (
        r"security_load_kw not declared: rated (?P<rated>[\d.]+) kW cannot be shown to be >= 120 % of it",
        "未声明 security_load_kw：无法证明额定 {rated} kW ≥ 保安负荷的 120%",
    ),
    (
        r"rated (?P<rated>[\d.]+) kW = (?P<pct>[\d.]+) % of security load (?P<sec>[\d.]+) kW "
        r"\(needs >= 120 %, (?P<need>[\d.]+) kW\)",
        "额定 {rated} kW，为保安负荷 {sec} kW 的 {pct}%（要求 ≥ 120%，即 {need} kW）",
    ),
    (r"(?P<gens>.*); allowed interruption (?P<limit>[\d.]+) s", "{gens}；允许中断时间 {limit} 秒"),
    (r"(?P<kind>\w+) interlock declared", "已声明{kind}闭锁"),
    (
        r"no rated_kw for (?P<ids>.*): their counter steps are not checked for plausibility",
        "未声明 rated_kw：{ids}，其电量计数跳变不做合理性检查",
    ),
    (
        r"rated_kw declared for all (?P<n>\d+) device\(s\) with an energy counter",
        "全部 {n} 台带电量计数的设备已声明 rated_kw",
    ),
    # switch-over (第六条5), second-grade circuit pairs (第六条3), overhead reasons (第七条), supply roles
    (r"no transfer switch", "没有切换开关"),
    (
        r"no transfer switch between (the|two grid) sources; (?P<grade>\w+) grade needs one",
        "电源之间没有切换开关；{grade}重要电力客户要求配置",
    ),
    (
        r"(?P<sw>[\w-]+) (?P<mode>automatic|manual) (?P<t>[\d.]+) s <= allowed (?P<limit>[\d.]+) s",
        "{sw} {mode}切换 {t} 秒 ≤ 允许 {limit} 秒",
    ),
    (
        r"(?P<sw>[\w-]+) (?P<mode>automatic|manual) (?P<t>[\d.]+) s > allowed (?P<limit>[\d.]+) s",
        "{sw} {mode}切换 {t} 秒 > 允许 {limit} 秒",
    ),
    (
        r"(?P<sw>[\w-]+) (?P<mode>automatic|manual) no transfer_time_s: declare transfer_time_s(?P<live>; check live)?",
        "{sw} {mode}切换，未声明 transfer_time_s：请声明{live}",
    ),
    (
        r"(?P<sw>[\w-]+) manual (?P<t>[^:]*): manual switch-over cannot meet (?P<limit>[\d.]+) s",
        "{sw} 手动切换（{t}）：无法满足允许中断时间 {limit} 秒",
    ),
    (r"fewer than 2 circuits", "回路少于 2 路"),
    (
        r"no two circuits from different substations or bus sections: all on (?P<sub>[\w-]+) bus (?P<bus>\w+)",
        "没有来自不同变电站或不同母线段的两路回路：全部接在 {sub} {bus} 段",
    ),
    (
        r"(?P<a>[\w-]+) \((?P<sa>[\w-]+) bus (?P<ba>\w+)\) and (?P<b>[\w-]+) \((?P<sb>[\w-]+) bus (?P<bb>\w+)\): "
        r"different substations",
        "{a}（{sa} {ba} 段）与 {b}（{sb} {bb} 段）：来自不同变电站",
    ),
    (
        r"(?P<a>[\w-]+) \((?P<sa>[\w-]+) bus (?P<ba>\w+)\) and (?P<b>[\w-]+) \((?P<sb>[\w-]+) bus (?P<bb>\w+)\): "
        r"one substation, different bus sections",
        "{a}（{sa} {ba} 段）与 {b}（{sb} {bb} 段）：同一变电站的不同母线段",
    ),
    (
        r"insulated overhead at <= 10 kV without overhead_reason: (?P<ids>.*) "
        r"\(allowed only where conditions force it; declare why\)",
        "10 kV 及以下绝缘架空线未说明原因：{ids}（仅在条件受限时允许，请声明 overhead_reason）",
    ),
    (
        r"(?P<dev>[\w-]+) \(meter of source (?P<id>[\w-]+)\): role (?P<role>\w+): (?P<rule>.*)",
        "{dev}（电源 {id} 的电表）：角色 {role}：{rule}",
    ),
    (
        r"(?P<dev>[\w-]+) \((?P<what>controller|meter) of (?P<kind>generator|transfer switch) (?P<id>[\w-]+)\): "
        r"role (?P<role>\w+): (?P<rule>.*)",
        "{dev}（{kind} {id} 的{what}）：角色 {role}：{rule}",
    ),
    (
        r"(?P<dev>[\w-]+) \(profile (?P<profile>[\w-]+)\): role (?P<role>\w+): (?P<rule>.*)",
        "{dev}（型号配置 {profile}）：角色 {role}：{rule}",
    ),
)


def compliance_detail(detail: str, lang: str) -> str:
    """A static-check detail in the page's language (Chinese from the patterns above; else as written)."""
    if lang != "zh":
        return detail
    soft = ""
    m = re.fullmatch(r"(?P<body>.*) \((?P<soft>[^()]*)\)", detail)
    for candidate in ((detail, ""), (m.group("body"), m.group("soft")) if m else None):
        if candidate is None:
            continue
        text, soft = candidate
        for pattern, zh in _DETAILS:
            hit = re.fullmatch(pattern, text)
            if hit is not None:
                out = zh.format(**{k: _zh_words(v) for k, v in hit.groupdict().items()})
                return f"{out}（{soft}）" if soft else out
    if re.fullmatch(
        r"[\w-]+ (cable|insulated_overhead|overhead)(, [\w-]+ (cable|insulated_overhead|overhead))*", detail
    ):
        return _zh_words(detail).replace(", ", "，")
    return detail


def _zh_words(text: str) -> str:
    if text in _PHRASES:
        return _PHRASES[text]
    return re.sub(r"\b[a-z_]+\b", lambda w: _WORDS.get(w.group(0), w.group(0)), text).replace(" on ", " 在 ")


_AUDIT: Final[tuple[tuple[str, str], ...]] = (
    (
        r"cooling setpoint (?P<v>[\d.]+) °C is below cooling_min_c (?P<limit>[\d.]+) °C",
        "制冷设定 {v} °C 低于下限 {limit} °C，已拒绝",
    ),
    (
        r"heating setpoint (?P<v>[\d.]+) °C is above heating_max_c (?P<limit>[\d.]+) °C",
        "制热设定 {v} °C 高于上限 {limit} °C，已拒绝",
    ),
    (r"(?P<id>\S+) has role (?P<role>\w+): never commanded", "{id} 为关键/安全设备，从不控制"),
    (r"(?P<id>\S+) is in server room (?P<room>\S+): never commanded", "{id} 位于机房 {room}，从不控制"),
    (r"drivers are not running", "驱动未运行"),
    (r"no report of (?P<what>.*) within (?P<s>[\d.]+) s", "{s} 秒内未收到 {what} 的回报"),
    (r"no confirmation within (?P<s>[\d.]+) s \((?P<last>.*)\)", "{s} 秒内未确认（{last}）"),
    (r"publish failed: (?P<why>.*)", "发布失败：{why}"),
    (
        r"override (?P<id>\d+) of (?P<room>\S+) \(capped at override_max_h\)",
        "加班登记 #{id}：{room}（已按最长时长截断）",
    ),
    (r"override (?P<id>\d+) of (?P<room>\S+)", "加班登记 #{id}：{room}"),
    (r"override (?P<id>\d+) of (?P<room>\S+) ended at (?P<at>\S+)", "加班登记 #{id}：{room}，{at} 到期"),
    (r"override (?P<id>\d+) ended early", "加班登记 #{id} 提前结束"),
)


def audit_detail(detail: str, lang: str, site: Site | None = None, when: Callable[[str], str] | None = None) -> str:
    """An audit record's detail in the page's language: known sentences in Chinese (rooms by name,
    times in site time when `site` and `when` are given), the rest as written."""
    if lang != "zh" or not detail:
        return detail
    parts = []
    for part in detail.split("; "):
        observed = re.fullmatch(r"observed (?P<v>.*)", part)
        if observed:
            value = {"True": "开", "False": "关", "None": "—"}.get(observed.group("v"), observed.group("v").strip("'"))
            parts.append(f"回读 {value}")
            continue
        for pattern, zh in _AUDIT:
            hit = re.fullmatch(pattern, part)
            if hit is not None:
                fields = hit.groupdict()
                if site is not None and "room" in fields:
                    fields["room"] = next((r.name for r in site.rooms if r.id == fields["room"]), fields["room"])
                if when is not None and "at" in fields:
                    fields["at"] = when(fields["at"])
                parts.append(zh.format(**fields))
                break
        else:
            parts.append(part)
    return "；".join(parts)
