"""Labels: both languages for every key the templates use; the language a request gets."""

from __future__ import annotations

import re

import pytest

from service.alarms.record import AlarmState, Severity
from service.alarms.rules import ALARM_TYPES, AlarmTypeSpec
from service.config.site import RoomKind
from service.live.transfers import TRANSFER_KINDS
from service.web import i18n
from service.web.render import TEMPLATES

LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[A-Za-z0-9_.\-/ ]+)["']""")


def test_every_literal_template_key_has_both_languages() -> None:
    """A key a template names literally exists, non-empty, in Chinese and English."""
    used = {k for path in TEMPLATES.glob("*.html") for k in LITERAL_KEY.findall(path.read_text())}
    assert len(used) > 80
    missing = sorted(k for k in used if k not in i18n.LABELS)
    assert not missing
    assert all(zh and en for zh, en in i18n.LABELS.values())


def test_both_languages_take_the_same_format_arguments() -> None:
    """A label filled in with values (counts, times) names the same ones in Chinese and English."""
    fields = re.compile(r"{(\w*)}")
    differ = {k: (zh, en) for k, (zh, en) in i18n.LABELS.items() if set(fields.findall(zh)) != set(fields.findall(en))}
    assert differ == {}
    t = i18n.translator("en")
    assert t("alarms.flood_detail", raised=14, minutes=10, threshold=10).startswith("14 alarms raised in 10 min")


def test_labels_for_every_alarm_type_state_severity_and_room_kind() -> None:
    """Keys the templates build from data: alarm types, states, severities, room kinds, transfer kinds."""
    keys = [spec.label_key for spec in ALARM_TYPES] + [f"state.{s.value}" for s in AlarmState]
    keys += [f"sev.{s.value}" for s in Severity] + [f"kind.{k.value}" for k in RoomKind]
    keys += [f"transfer.{k}" for k in TRANSFER_KINDS]
    assert [k for k in keys if k not in i18n.LABELS] == []


@pytest.mark.parametrize("spec", ALARM_TYPES, ids=lambda spec: spec.type.value)
def test_every_alarm_type_in_the_table_has_a_label_and_a_sentence_in_both_languages(spec: AlarmTypeSpec) -> None:
    """The table's i18n keys exist, non-empty, in Chinese and English; a sentence uses only the values
    service.web.messages fills in, the same ones in both languages."""
    for key in (spec.label_key, spec.sentence_key):
        assert key in i18n.LABELS, key
        zh, en = i18n.LABELS[key]
        assert zh.strip() and en.strip(), key
    fields = re.compile(r"{(\w*)}")
    for key in (spec.sentence_key, f"{spec.sentence_key}.none"):
        if key in i18n.LABELS:
            zh, en = i18n.LABELS[key]
            assert set(fields.findall(zh)) == set(fields.findall(en)) <= {"subject", "value", "limit"}, key
            assert re.search(r"[\u4e00-\u9fff]", zh), key  # the Chinese sentence is Chinese


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "expected"),
    [
        ("en", "zh", "zh-CN", "en"),
        (None, "en", "zh-CN", "en"),
        ("xx", None, "en-GB,en;q=0.9", "en"),
        (None, None, "zh-TW,zh;q=0.9,en;q=0.5", "zh"),
        (None, None, "fr-FR", "zh"),
        (None, None, None, "zh"),
    ],
)
def test_language_choice(query: str | None, cookie: str | None, accept: str | None, expected: str) -> None:
    """Query, then cookie, then Accept-Language, then Chinese."""
    assert i18n.pick(query, cookie, accept) == expected


def test_unknown_key_shows_itself_and_formats() -> None:
    """A missing label shows its key rather than failing; labels take format arguments."""
    t = i18n.translator("en")
    assert t("no.such.key") == "no.such.key"
    assert t("age.m", n=3) == "3 min"
    assert i18n.translator("zh")("age.m", n=3) == "3 分钟"
