"""Dashboard labels in Chinese and English, and how a request picks its language.

The language comes from `?lang=zh|en` (which the page then remembers in the `wk_lang` cookie),
else that cookie, else the browser's Accept-Language, else Chinese: the people who run an
important power customer's site read Chinese first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, Literal

Lang = Literal["zh", "en"]
LANGS: Final[tuple[Lang, ...]] = ("zh", "en")
DEFAULT: Final[Lang] = "zh"
COOKIE: Final = "wk_lang"

# key -> (zh, en)
LABELS: Final[Mapping[str, tuple[str, str]]] = {
    # page
    "app.title": ("电力监控", "Power monitoring"),
    "nav.supply": ("供电", "Supply"),
    "nav.rooms": ("房间", "Rooms"),
    "nav.alarms": ("告警", "Alarms"),
    "nav.energy": ("能耗", "Energy"),
    "nav.schedule": ("计划与加班", "Schedule"),
    "nav.audit": ("审计", "Audit"),
    "live.connecting": ("连接中", "Connecting"),
    "live.on": ("实时", "Live"),
    "live.off": ("已断开，重连中", "Reconnecting"),
    "lang.switch": ("English", "中文"),
    "role.viewer": ("查看", "viewer"),
    "role.operator": ("操作员", "operator"),
    "role.admin": ("管理员", "admin"),
    "logout": ("退出", "Log out"),
    "unknown": ("未知", "unknown"),
    "none": ("无", "none"),
    "updated": ("更新于", "updated"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "all": ("全部", "All"),
    "page.of": ("共 {total} 条", "{total} in all"),
    "done": ("已完成", "Done"),
    "failed": ("失败", "Failed"),
    # login
    "login.title": ("登录", "Log in"),
    "login.key": ("API 密钥", "API key"),
    "login.hint": ("管理员用以下命令生成密钥：", "An administrator creates keys with:"),
    "login.submit": ("登录", "Log in"),
    "login.bad": ("密钥无效或已吊销。", "That key is not valid or has been revoked."),
    "login.missing": ("请输入 API 密钥。", "Enter an API key."),
    "login.blocked": ("失败次数过多，请一分钟后再试。", "Too many failed attempts; try again in a minute."),
    # grades
    "grade.special": ("特级重要电力客户", "special-grade important power customer"),
    "grade.first": ("一级重要电力客户", "first-grade important power customer"),
    "grade.second": ("二级重要电力客户", "second-grade important power customer"),
    "grade.temporary": ("临时性重要电力客户", "temporary important power customer"),
    "grade.ordinary": ("普通电力客户", "ordinary power customer"),
    # alarm badge
    "badge.none": ("无活动告警", "No active alarms"),
    "badge.unacked": ("未确认", "unacknowledged"),
    # supply
    "supply.title": ("供电单线图", "Single-line diagram"),
    "supply.load": ("负荷", "Load"),
    "supply.available": ("可用", "available"),
    "supply.present": ("有压", "present"),
    "supply.lost": ("失电", "lost"),
    "supply.feeding": ("供电中", "feeding"),
    "supply.dead": ("无电", "de-energised"),
    "supply.pos.unknown": ("位置未知", "position unknown"),
    "supply.pos.0": ("0 位（断开）", "pos 0 (open)"),
    "supply.pos.I": ("I 位", "pos I"),
    "supply.pos.II": ("II 位", "pos II"),
    "supply.no_source": ("负荷无电源", "load without supply"),
    "supply.gen_breaker": ("发电机断路器", "generator breaker"),
    "supply.mains_breaker": ("市电断路器", "mains breaker"),
    "supply.closed": ("合闸", "closed"),
    "supply.open": ("分闸", "open"),
    "supply.ready": ("就绪", "ready"),
    "supply.not_ready": ("未就绪", "not ready"),
    "supply.security_load": ("保安负荷", "Security load"),
    "supply.peak_load": ("峰值负荷", "peak load"),
    "supply.bus": ("母线段", "bus section"),
    "gen.stopped": ("停机", "stopped"),
    "gen.pre-start": ("预启动", "pre-start"),
    "gen.warming": ("暖机", "warming up"),
    "gen.running": ("运行", "running"),
    "gen.cooling": ("冷却", "cooling down"),
    "gen.not available": ("不可用", "not available"),
    # compliance
    "compliance.title": ("合规状态", "Compliance"),
    "compliance.PASS": ("符合", "PASS"),
    "compliance.FAIL": ("不符合", "FAIL"),
    "compliance.WARN": ("注意", "WARN"),
    "compliance.N/A": ("不适用", "N/A"),
    "compliance.static": ("配置检查（GB/T 29328）", "Configuration check (GB/T 29328)"),
    "compliance.sources_available": ("可用电源", "Sources available"),
    "compliance.substations": ("独立变电站", "Independent substations"),
    "compliance.gen_ready": ("发电机就绪", "Generator ready"),
    "compliance.interruption": ("允许中断时间", "Allowed interruption"),
    "compliance.last_transfer": ("最近一次切换", "Last transfer"),
    "compliance.rules": ("规则明细", "Rules"),
    "rule.sources.count": ("电源数量", "number of supply sources"),
    "rule.sources.substations": ("来自不同变电站", "distinct substations"),
    "rule.sources.bus_sections": ("不同母线段", "distinct bus sections"),
    "rule.sources.capacity": ("单电源带全部负荷", "sources carry the load alone"),
    "rule.lines.type": ("线路型式", "line type per voltage"),
    "rule.lines.pole": ("不同杆架设（10 kV 及以下）", "no shared pole (<= 10 kV)"),
    "rule.lines.tower": ("不同塔架设（35 kV 及以上）", "no shared tower (>= 35 kV)"),
    "rule.generator.present": ("配置应急发电机", "emergency generator present"),
    "rule.generator.capacity": ("发电机容量 ≥ 保安负荷 120%", "generator >= 120 % of security load"),
    "rule.generator.start_time": ("发电机启动时间", "generator start time"),
    "rule.generator.interlock": ("防倒送电闭锁", "anti-backfeed interlock"),
    # rooms
    "rooms.department": ("部门", "Department"),
    "rooms.occupied": ("有人", "occupied"),
    "rooms.empty": ("无人", "empty"),
    "rooms.occ_unknown": ("人员未知", "occupancy unknown"),
    "rooms.lights_unknown": ("灯状态未知", "lights unknown"),
    "rooms.lights_on": ("灯亮", "lights on"),
    "rooms.lights_off": ("灯灭", "lights off"),
    "rooms.ac": ("空调", "AC"),
    "rooms.temperature": ("室温", "temperature"),
    "rooms.plugs": ("插座", "plugs"),
    "rooms.power": ("功率", "power"),
    "rooms.door_open": ("门窗开", "door open"),
    "rooms.override": ("加班至", "override until"),
    "rooms.controls": ("控制", "Controls"),
    "rooms.summary.lit_empty": ("无人亮灯", "lit and empty"),
    "rooms.summary.ac_on": ("空调开启", "ACs on"),
    "rooms.summary.power": ("办公区功率", "office power"),
    "rooms.summary.violations": ("违规", "violations"),
    "rooms.never_commanded": ("关键负荷，不受控制", "critical load, never commanded"),
    "cmd.on": ("开", "On"),
    "cmd.off": ("关", "Off"),
    "kind.office": ("办公室", "office"),
    "kind.meeting": ("会议室", "meeting room"),
    "kind.corridor": ("走廊", "corridor"),
    "kind.locker": ("更衣室", "locker room"),
    "kind.reception": ("前台", "reception"),
    "kind.server": ("机房", "server room"),
    "kind.other": ("其他", "other"),
    "mode.off": ("关", "off"),
    "mode.auto": ("自动", "auto"),
    "mode.cool": ("制冷", "cool"),
    "mode.heat": ("制热", "heat"),
    "mode.fan_only": ("送风", "fan"),
    "mode.dry": ("除湿", "dry"),
    # alarms
    "alarms.active": ("活动告警", "Active alarms"),
    "alarms.history": ("历史告警", "Alarm history"),
    "alarms.none": ("当前没有活动告警。", "No active alarms."),
    "alarms.none_history": ("没有符合条件的告警。", "No alarms match."),
    "alarms.severity": ("级别", "Severity"),
    "alarms.type": ("类型", "Type"),
    "alarms.subject": ("对象", "Subject"),
    "alarms.state": ("状态", "State"),
    "alarms.raised": ("发生", "Raised"),
    "alarms.cleared": ("恢复", "Cleared"),
    "alarms.acked_by": ("确认人", "Acked by"),
    "alarms.ack": ("确认", "Acknowledge"),
    "alarms.shelve": ("搁置", "Shelve"),
    "alarms.shelved_until": ("搁置至", "shelved until"),
    "alarms.hours": ("{h} 小时", "{h} h"),
    "alarms.flood": ("告警泛滥", "Alarm flood"),
    "alarms.flood_detail": (
        "{minutes} 分钟内已发生 {raised} 条告警（超过 {threshold} 条），请先处理最紧急的告警。",
        "{raised} alarms raised in {minutes} min (more than {threshold}); deal with the most urgent first.",
    ),
    "alarms.flood_since": ("开始于", "since"),
    "sev.critical": ("紧急", "critical"),
    "sev.high": ("重要", "high"),
    "sev.warning": ("一般", "warning"),
    "sev.low": ("提示", "low"),
    "state.active_unacked": ("未确认", "unacknowledged"),
    "state.active_acked": ("已确认", "acknowledged"),
    "state.cleared_unacked": ("已恢复未确认", "cleared, unacknowledged"),
    "state.cleared": ("已恢复", "cleared"),
    "state.shelved": ("已搁置", "shelved"),
    "type.source_transfer_failed": ("电源切换失败", "source transfer failed"),
    "type.backfeed": ("倒送电", "backfeed"),
    "type.redundancy_lost": ("电源冗余丧失", "redundancy lost"),
    "type.generator_start_failed": ("发电机启动失败", "generator start failed"),
    "type.generator_overload": ("发电机过载", "generator overload"),
    "type.lit_empty_room": ("长明灯", "lights on in an empty room"),
    "type.ac_too_cold": ("空调温度过低", "AC cooling too cold"),
    "type.ac_heating_too_warm": ("空调制热过高", "AC heating too warm"),
    "type.ac_door_open": ("开门窗开空调", "AC on with door open"),
    "type.high_power_appliance": ("违规大功率电器", "high-power appliance"),
    "type.shutdown_failed": ("关断失败", "shutdown failed"),
    "type.device_offline": ("设备离线", "device offline"),
    "type.telemetry_dropped": ("遥测数据丢失", "telemetry dropped"),
    # energy
    "energy.today": ("今日", "Today"),
    "energy.month": ("本月", "This month"),
    "energy.by_department": ("各部门用电", "Energy by department"),
    "energy.department": ("部门", "Department"),
    "energy.kwh": ("电量 kWh", "kWh"),
    "energy.cost": ("电费", "Cost"),
    "energy.after_hours": ("非工作时间", "after hours"),
    "energy.site": ("全站进线", "Site incomers"),
    "energy.no_data": ("还没有电量数据（每 15 分钟结算一次）。", "No energy data yet (settled every 15 minutes)."),
    "energy.tariff": ("分时电价", "Time-of-use tariff"),
    "energy.now": ("现在", "now"),
    "energy.load_today": ("今日各部门负荷 (kW)", "Load by department today (kW)"),
    "energy.no_chart": ("今天还没有部门电表的负荷数据。", "No department meter data today yet."),
    "energy.report_csv": ("月报 CSV", "Monthly report (CSV)"),
    "band.peak": ("峰", "peak"),
    "band.flat": ("平", "flat"),
    "band.valley": ("谷", "valley"),
    "band.sharp": ("尖峰", "sharp peak"),
    # schedule
    "schedule.calendar": ("工作日历", "Working calendar"),
    "schedule.working_now": ("现在是工作时间", "Working hours now"),
    "schedule.after_hours_now": ("现在是非工作时间", "After hours now"),
    "schedule.today_hours": ("今日工作时间", "Today's working hours"),
    "schedule.no_hours": ("今日休息", "No working hours today"),
    "schedule.sweeps": ("下班巡检关断时间", "After-hours sweeps"),
    "schedule.next_sweep": ("下次巡检", "Next sweep"),
    "schedule.jobs": ("计划任务", "Scheduled jobs"),
    "schedule.jobs_unavailable": ("计划任务接口暂不可用。", "The scheduler API is not available."),
    "schedule.last_run": ("上次运行", "Last run"),
    "schedule.next_run": ("下次运行", "Next run"),
    "schedule.run_now": ("立即执行下班关断", "Run after-hours sweep now"),
    "schedule.run": ("立即运行", "Run now"),
    "overrides.title": ("加班（延时供电）", "Overrides (working late)"),
    "overrides.create": ("登记加班", "Create override"),
    "overrides.room": ("房间", "Room"),
    "overrides.hours": ("时长", "Duration"),
    "overrides.reason": ("事由", "Reason"),
    "overrides.reason_ph": ("例如：项目赶工", "e.g. project deadline"),
    "overrides.active": ("生效中", "Active"),
    "overrides.until": ("至", "Until"),
    "overrides.by": ("登记人", "By"),
    "overrides.expire": ("结束", "End now"),
    "overrides.ended": ("已结束", "ended"),
    "overrides.expired": ("已到期", "expired"),
    "overrides.none": ("没有加班登记。", "No overrides."),
    "overrides.max": ("最长 {h} 小时", "at most {h} h"),
    # audit
    "audit.title": ("操作审计", "Audit log"),
    "audit.at": ("时间", "Time"),
    "audit.who": ("操作者", "Who"),
    "audit.device": ("设备", "Device"),
    "audit.change": ("变更", "Change"),
    "audit.result": ("结果", "Result"),
    "audit.detail": ("说明", "Detail"),
    "audit.none": ("没有审计记录。", "No audit records."),
    "result.confirmed": ("已确认", "confirmed"),
    "result.failed": ("失败", "failed"),
    "result.refused": ("已拒绝", "refused"),
    "result.override": ("登记加班", "override"),
    "result.override_ended": ("结束加班", "override ended"),
    "result.settings": ("修改设置", "settings"),
    "sweep.switched_off": ("已关断", "switched off"),
    "sweep.already_off": ("原已关闭", "already off"),
    "sweep.skipped_occupied": ("有人未关", "occupied, left on"),
    "sweep.skipped_override": ("加班未关", "override, left on"),
    "sweep.skipped_exempt": ("豁免", "exempt"),
    "sweep.skipped_manual_on": ("刚手动打开", "just switched on by hand"),
    "sweep.refused": ("拒绝", "refused"),
    "sweep.failed": ("失败", "failed"),
    # units and ages
    "age.s": ("{n} 秒", "{n} s"),
    "age.m": ("{n} 分钟", "{n} min"),
    "age.h": ("{n} 小时", "{n} h"),
    "age.d": ("{n} 天", "{n} d"),
}


def pick(query: str | None, cookie: str | None, accept_language: str | None) -> Lang:
    """The language for a request: query, then cookie, then Accept-Language, then Chinese."""
    for candidate in (query, cookie):
        if candidate in LANGS:
            return "zh" if candidate == "zh" else "en"
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return DEFAULT


def translator(lang: Lang) -> Callable[..., str]:
    """t(key, default=None, **fmt): the label in `lang`; without one, `default` or else the key itself
    (visible, never an error)."""
    index = LANGS.index(lang)

    def t(key: str, default: str | None = None, **fmt: object) -> str:
        pair = LABELS.get(key)
        text = pair[index] if pair else default if default is not None else key
        return text.format(**fmt) if fmt else text

    return t
