"""Keyed PII pseudonymization: every kind in English and Chinese, checksums, tokens, no leaks."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorafeed.privacy import (
    InvalidPrivacyConfig,
    InvalidPrivacyKey,
    PrivacyConfig,
    Pseudonymizer,
    contains_raw_pii,
)

KEY = b"unit-test-key-0123456789abcdef"
OTHER_KEY = b"another-key-0123456789abcdefgh"
TOKEN = re.compile(r"\[([A-Z_0-9]+):[0-9a-f]{12}\]")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def with_id_check(first17: str) -> str:
    """A resident ID: the 17 digits and their GB 11643 check character."""
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True))
    return first17 + "10X98765432"[total % 11]


def with_luhn(partial: str) -> str:
    """`partial` and the Luhn check digit that makes it valid."""
    for check in "0123456789":
        digits = [int(d) for d in reversed(partial + check)]
        doubled = [d * 2 - 9 if d > 4 else d * 2 for d in digits[1::2]]
        total = sum(digits[0::2]) + sum(doubled)
        if total % 10 == 0:
            return partial + check
    raise AssertionError("unreachable")


VALID_ID = "11010519491231002X"  # the worked example of GB 11643
VALID_CARD = "4111111111111111"
UNIONPAY_19 = with_luhn("622202020000123456")


@pytest.fixture(scope="module")
def pseudo() -> Pseudonymizer:
    return Pseudonymizer(KEY)


def test_id_and_luhn_helpers_agree_with_published_examples() -> None:
    assert with_id_check(VALID_ID[:17]) == VALID_ID
    assert with_luhn(VALID_CARD[:15]) == VALID_CARD


@pytest.mark.parametrize(
    ("sentence", "raw", "kind"),
    [
        ("Please write to zhang.wei@example.com today.", "zhang.wei@example.com", "EMAIL"),
        ("请发邮件到zhang.wei@example.com。", "zhang.wei@example.com", "EMAIL"),
        ("Call 13800138000 after 6pm.", "13800138000", "PHONE"),
        ("请联系13800138000咨询", "13800138000", "PHONE"),
        ("Mobile: +86 138 0013 8000.", "+86 138 0013 8000", "PHONE"),
        ("电话0086-138-0013-8000转客服", "0086-138-0013-8000", "PHONE"),
        ("Office 010-12345678, ext 2.", "010-12345678", "PHONE"),
        ("深圳办公室0755-1234567，欢迎来电", "0755-1234567", "PHONE"),
        ("US desk +1 415 555 2671 (9-5).", "+1 415 555 2671", "PHONE"),
        ("London +44 20 7946 0958.", "+44 20 7946 0958", "PHONE"),
        ("ID number 11010519491231002X on file.", VALID_ID, "CN_ID"),
        ("身份证号11010519491231002X已登记", VALID_ID, "CN_ID"),
        ("Card 4111 1111 1111 1111 was charged.", "4111 1111 1111 1111", "BANK_CARD"),
        ("银行卡4111-1111-1111-1111已绑定", "4111-1111-1111-1111", "BANK_CARD"),
        (f"卡号{UNIONPAY_19}，请核对", UNIONPAY_19, "BANK_CARD"),
        ("Login from 192.168.1.20 failed.", "192.168.1.20", "IPV4"),
        ("登录IP为203.0.113.7，请确认", "203.0.113.7", "IPV4"),
        ("Client 2001:db8::8a2e:370:7334 connected.", "2001:db8::8a2e:370:7334", "IPV6"),
        ("来源地址fe80::1ff:fe23:4567:890a异常", "fe80::1ff:fe23:4567:890a", "IPV6"),
        ("Mapped ::ffff:192.0.2.1 seen.", "::ffff:192.0.2.1", "IPV6"),
    ],
)
def test_each_kind_is_replaced_in_english_and_chinese(
    pseudo: Pseudonymizer, sentence: str, raw: str, kind: str
) -> None:
    result = pseudo.pseudonymize(sentence)
    assert raw not in result.text
    assert [m.group(1) for m in TOKEN.finditer(result.text)] == [kind]
    assert result.counts == {kind.lower(): 1}
    before, after = sentence.split(raw)
    assert result.text.startswith(before) and result.text.endswith(after)


def test_chinese_sentence_with_phone_and_email(pseudo: Pseudonymizer) -> None:
    result = pseudo.pseudonymize("请联系13800138000或发邮件到zhang.wei@example.com")
    expected = r"请联系\[PHONE:[0-9a-f]{12}\]或发邮件到\[EMAIL:[0-9a-f]{12}\]"
    assert re.fullmatch(expected, result.text)
    assert result.counts == {"phone": 1, "email": 1}


@pytest.mark.parametrize(
    "text",
    [
        "ID 11010519491231002" + ("1" if VALID_ID[-1] != "1" else "2") + " has a bad check char",
        "ID " + with_id_check("11010519491331002") + " has a valid check char but no 31st month",
        "Card 4111111111111112 fails Luhn",
        "Card 4111 1111 1111 1112 fails Luhn",
        "IP 256.1.1.1 and 10.0.0.999 are not addresses",
        "Meeting at 10:30:00, version 1.2.3.4.5, MAC 00:1a:2b:3c:4d:5e",
        "订单号202401011380013800099，数字串中的手机号不算",
        "流水号20240113800138000或13800138000123都不是手机号",
        "The year 2024 and 1 380 013 are not phones",
    ],
)
def test_invalid_or_embedded_values_are_left_alone(pseudo: Pseudonymizer, text: str) -> None:
    result = pseudo.pseudonymize(text)
    assert result.text == text
    assert result.counts == {}
    assert contains_raw_pii(text) == []


def test_full_width_forms_are_read_as_ascii(pseudo: Pseudonymizer) -> None:
    text = "电话：１３８ ００１３ ８０００，邮箱ｚｈａｎｇ．ｗｅｉ＠ｅｘａｍｐｌｅ．ｃｏｍ。"
    result = pseudo.pseudonymize(text)
    assert result.counts == {"phone": 1, "email": 1}
    assert "[PHONE:" in result.text and "８０００" not in result.text
    assert pseudo.pseudonymize("13800138000").text in result.text
    assert pseudo.pseudonymize("zhang.wei@example.com").text in result.text
    assert contains_raw_pii(text) == ["email", "phone"]
    assert pseudo.pseudonymize("全角标点，不变：（无）").text == "全角标点，不变：（无）"


def test_invalid_id_is_not_half_eaten_as_a_phone(pseudo: Pseudonymizer) -> None:
    bad = VALID_ID[:17] + ("1" if VALID_ID[-1] != "1" else "2")
    assert pseudo.pseudonymize(f"证件{bad}无效").text == f"证件{bad}无效"


def test_card_is_not_half_eaten_as_a_phone(pseudo: Pseudonymizer) -> None:
    card = with_luhn("1380013800012345")  # starts like a mobile number
    result = pseudo.pseudonymize(f"卡号{card}已冻结")
    assert result.counts == {"bank_card": 1}
    assert "PHONE" not in result.text and card not in result.text


@pytest.mark.parametrize(
    ("kind", "forms"),
    [
        (
            "PHONE",
            ["+86 138 0013 8000", "13800138000", "0086-138-0013-8000", "138-0013-8000",
             "(+86) 138 0013 8000", "+8613800138000"],
        ),
        ("PHONE", ["010-12345678", "+86 10 1234 5678", "(010) 12345678"]),
        ("EMAIL", ["Zhang.Wei@Example.COM", "zhang.wei@example.com"]),
        ("BANK_CARD", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"]),
        ("IPV6", ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"]),
        ("CN_ID", ["11010519491231002X", "11010519491231002x"]),
    ],
)
def test_same_value_gets_same_token_across_formats(
    pseudo: Pseudonymizer, kind: str, forms: list[str]
) -> None:
    tokens = {pseudo.pseudonymize(f"值 {form} 。").text for form in forms}
    assert len(tokens) == 1
    assert f"[{kind}:" in tokens.pop()


def test_token_depends_on_key_and_value_only(pseudo: Pseudonymizer) -> None:
    text = "mail zhang.wei@example.com"
    assert Pseudonymizer(KEY).pseudonymize(text).text == pseudo.pseudonymize(text).text
    assert Pseudonymizer(OTHER_KEY).pseudonymize(text).text != pseudo.pseudonymize(text).text
    assert (
        pseudo.pseudonymize("mail li.na@example.com").text != pseudo.pseudonymize(text).text
    )


def test_key_never_shows_and_must_be_long_enough() -> None:
    pseudo = Pseudonymizer(KEY)
    assert KEY.decode() not in repr(pseudo) and KEY.decode() not in str(pseudo)
    assert "redacted" in repr(pseudo)
    with pytest.raises(InvalidPrivacyKey, match="has 5 bytes, at least 16"):
        Pseudonymizer(b"short")
    with pytest.raises(InvalidPrivacyKey, match="must be bytes, got str"):
        Pseudonymizer("a string key of enough length")  # type: ignore[arg-type]


def _seeded_pii(rnd: random.Random) -> list[tuple[str, str]]:
    """(kind, raw value) pairs, every value valid, in the formats people write."""
    values: list[tuple[str, str]] = []
    for _ in range(25):
        birth = f"{rnd.randint(1950, 2010)}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}"
        region, serial = rnd.randint(110000, 659999), rnd.randint(0, 999)
        values.append(("cn_id", with_id_check(f"{region}{birth}{serial:03d}")))
        prefix = rnd.choice(["4", "51", "6222"])
        length = rnd.choice([16, 19])
        card = with_luhn(prefix + "".join(rnd.choices("0123456789", k=length - 1 - len(prefix))))
        sep = rnd.choice(["", " ", "-"])
        grouped = sep.join(card[i : i + 4] for i in range(0, len(card), 4)) if sep else card
        values.append(("bank_card", grouped))
        mobile = f"1{rnd.randint(3, 9)}{rnd.randint(0, 999_999_999):09d}"
        spaced = f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}"
        values.append(("phone", rnd.choice([mobile, spaced])))
        user, host = rnd.randint(0, 10**6), rnd.randint(1, 99)
        values.append(("email", f"user{user}.{rnd.choice('abc')}@corp{host}.cn"))
        values.append(("ipv4", ".".join(str(rnd.randint(1, 254)) for _ in range(4))))
        groups = ":".join(f"{rnd.randint(1, 0xFFFF):x}" for _ in range(6))
        values.append(("ipv6", f"2001:db8:{groups}"))
    return values


def test_no_raw_pii_survives_on_a_seeded_corpus(pseudo: Pseudonymizer) -> None:
    rnd = random.Random(20240601)
    values = _seeded_pii(rnd)
    templates = [
        "Customer {v} asked about a refund.", "客户{v}申请退款。", "请核对：{v}，谢谢",
        "Ticket note ({v}) escalated", "联系方式 {v}\n", "<{v}>",
    ]
    text = "".join(rnd.choice(templates).format(v=value) for _, value in values)
    assert contains_raw_pii(text) == sorted({kind for kind, _ in values})
    result = pseudo.pseudonymize(text)
    assert contains_raw_pii(result.text) == []
    for _, value in values:
        assert value not in result.text
    expected: dict[str, int] = {}
    for kind, _ in values:
        expected[kind] = expected.get(kind, 0) + 1
    assert result.counts == expected
    assert pseudo.pseudonymize(result.text).text == result.text


def test_extra_patterns_are_pseudonymized_and_detected() -> None:
    config = PrivacyConfig(extra_patterns={"employee_id": r"EMP-\d{6}", "twice": r"(\d{3})-\1"})
    pseudo = Pseudonymizer(KEY, config)
    result = pseudo.pseudonymize("工号EMP-123456，编号 777-777，手机13800138000")
    assert re.search(r"工号\[EMPLOYEE_ID:[0-9a-f]{12}\]", result.text)
    assert "[TWICE:" in result.text and "777-777" not in result.text
    assert result.counts == {"employee_id": 1, "twice": 1, "phone": 1}
    assert contains_raw_pii("EMP-654321", config) == ["employee_id"]
    assert contains_raw_pii("EMP-654321") == []
    assert pseudo.pseudonymize(result.text).text == result.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra_patterns": {"order": "ORD-(\\d+"}}, r"'order' does not compile: 'ORD-\(\\\\d\+'"),
        ({"extra_patterns": {"Order-Id": "x"}}, "kind 'Order-Id' must match"),
        ({"extra_patterns": {"email": "x"}}, "kind 'email' is a built-in kind"),
        ({"extra_patterns": {"blank": "a*"}}, "for 'blank' matches '': 'a\\*'"),
        ({"token_format": "[{kind}]"}, "needs {digest} exactly once"),
        ({"token_format": "{kind}:{digest}"}, "must begin and end with a delimiter, not '{'"),
        ({"token_format": "[{kind} {digest}]"}, "must not contain whitespace"),
        ({"digest_chars": 4}, "digest_chars must be in 8..64, got 4"),
    ],
)
def test_bad_config_is_rejected_naming_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPrivacyConfig, match=message):
        PrivacyConfig(**kwargs)  # type: ignore[arg-type]


def test_custom_token_format() -> None:
    pseudo = Pseudonymizer(KEY, PrivacyConfig(token_format="<{kind}|{digest}>", digest_chars=16))
    out = pseudo.pseudonymize("mail a.b@example.org now").text
    assert re.fullmatch(r"mail <EMAIL\|[0-9a-f]{16}> now", out)
    assert pseudo.pseudonymize(out).text == out


FRAGMENTS = [
    "13800138000", "+86 138 0013 8000", "zhang.wei@example.com", VALID_ID, VALID_CARD,
    "4111 1111 1111 1111", "192.168.0.1", "2001:db8::1", "010-12345678", "+1 415 555 2671",
    "[EMAIL:0123456789ab]", "abcd::", "::1", "1.2.3.4.5", "请联系", "或", " ", "-", ".", ":", "@",
]
texty = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(alphabet="0123456789 -+.:@()[]abcdefXx中文１３８０＠（）：，", max_size=8),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(alphabet=st.characters(exclude_categories=())), texty))
def test_pseudonymize_never_raises_and_is_idempotent(text: str) -> None:
    pseudo = Pseudonymizer(KEY)
    once = pseudo.pseudonymize(text).text
    assert pseudo.pseudonymize(once).text == once
    assert contains_raw_pii(once) == []
