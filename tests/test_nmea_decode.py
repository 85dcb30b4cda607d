"""Tables of hand-written NMEA sentences through `ingest.nmea` and `ingest.fixes.NmeaStream`,
plus hypothesis properties (never raises, checksum round trip, coordinates in range)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.fixes import Fix, NmeaStream
from ingest.nmea import checksum, decode_line, format_sentence

NOW = datetime(2026, 3, 2, 5, 40, 0, tzinfo=timezone.utc)
UTC = timezone.utc


def line(body: str) -> bytes:
    """A framed sentence as bytes."""
    return format_sentence(body).encode()


def feed(*bodies: str, received_at: datetime = NOW, flush: bool = True, stream: NmeaStream | None = None):
    """Feed framed bodies as one CR LF payload."""
    stream = stream or NmeaStream()
    payload = b"\r\n".join(line(b) for b in bodies) + b"\r\n"
    return stream.feed(payload, received_at, flush=flush)


# ---------------------------------------------------------------- checksum and framing
@pytest.mark.parametrize(
    ("sentence", "body", "expected"),
    [
        # Real sentences from the gpsd captures with their transmitted checksums.
        ("$GPGGA,194050.00,4221.8237733,N,07101.9411707,W,1,00,3.3,10.835,M,-33.320,M,,*62", None, "62"),
        ("$GNRMC,132827.20,A,4134.49941239,N,09345.03495785,W,0.482,33.532,180320,11.5985,E,D*01", None, "01"),
        ("$GPRMC,,V,,,,,,,,,,N*53", None, "53"),
        (None, "", "00"),
        (None, "A", "41"),
        (None, "AA", "00"),
    ],
)
def test_checksum_known(sentence, body, expected):
    """checksum() equals the transmitted checksum of real sentences and known XORs."""
    if sentence is not None:
        body = sentence[1 : sentence.index("*")]
    assert checksum(body) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"$GPRMC,,V,,,,,,,,,,N*53", "sentences_ok"),
        (b"$GPRMC,,V,,,,,,,,,,N*54", "bad_checksum"),
        (b"$GPRMC,,V,,,,,,,,,,N*5", "truncated"),
        (b"$GPRMC,,V,,,,,,,,,,N*", "truncated"),
        (b"$GPRMC,,V,,,,,,,,,,N", "no_checksum"),
        (b"$GPRMC,,V,,,,,,,,,,N*ZZ", "bad_checksum"),
        (b"$", "truncated"),
        (b"\x00\xff\xfegarbage", "garbage"),
        (b"$GPRMC,,V,\xff\xfe,,,,,,,,N*53", "not_ascii"),
        (b"$GPRMC,,V,\xc3\x28,,,,,,,,N*53", "not_ascii"),  # invalid UTF-8
        (b"\x01\x02$GPRMC,,V,,,,,,,,,,N*53", "sentences_ok"),  # binary before the '$'
        (b"$GPRMC,,V,,,,,,,,,,N*53  ", "sentences_ok"),
        (line("gprmc,,V,,,,,,,,,,N"), "unknown_sentence"),
        (b"$GPGSV,1,1,00,1*64", "ignored_sentence"),
        (line("PGRME,15.0,M,45.0,M,25.0,M"), "ignored_sentence"),
        (line("GPGGA,1234,,,,,0,00,,,M,,M,,"), "parse_error"),  # time too short
        (line("GPGGA,250000,,,,,0,00,,,M,,M,,"), "parse_error"),  # hour 25
        (line("GPGGA,120000,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "parse_error"),  # hemisphere
        (line("GPGGA,120000,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "parse_error"),  # minutes 67
        (line("GPGGA,120000,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "parse_error"),  # lat 91
        (line("GPGGA,120000,4807.038,N,,,1,08,0.9,545.4,M,46.9,M,,"), "parse_error"),  # lat without lon
        (line("GPGGA,120000,4807.038,N,01131.000,E,1,08,nan,545.4,M,46.9,M,,"), "parse_error"),
        (line("GPGGA,120000,4807.038,N"), "parse_error"),  # truncated field list, valid checksum
        (line("GPRMC,000231.099,A,4829.0005,N,00022.0015,E,0.15,212.28,2208-1,,,A"), "bad_date"),
        (line("GPZDA,120000,31,02,2024,00,00"), "bad_date"),
    ],
)
def test_decode_line_reasons(raw, reason):
    """Every framing and field defect maps to its count reason."""
    assert decode_line(raw)[1] == reason


def test_malformed_date_keeps_position():
    """The Telit '2208-1' date (pynmea2 raises TypeError on it) drops the date, keeps lat/lon."""
    sentence, reason = decode_line(b"$GPRMC,000231.099,A,4829.0005,N,00022.0015,E,0.15,212.28,2208-1,,,A*73")
    assert reason == "bad_date"
    assert sentence.date is None
    assert sentence.lat == pytest.approx(48 + 29.0005 / 60)
    assert sentence.lon == pytest.approx(22.0015 / 60)


# ---------------------------------------------------------------- sentence tables per talker
TALKERS = ["GP", "GN", "GL", "GA", "BD", "GB"]


@pytest.mark.parametrize("talker", TALKERS)
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "GGA,053232.438,3114.8789,N,12135.2442,E,1,06,1.2,153.8,M,8.3,M,,0000",
            {"kind": "GGA", "tod": 5 * 3600 + 32 * 60 + 32.438, "lat": 31 + 14.8789 / 60,
             "lon": 121 + 35.2442 / 60, "quality": 1, "sats": 6, "hdop": 1.2, "alt": 153.8, "valid": True, "digits": 4},
        ),
        (
            "RMC,132827.20,A,4134.49941239,S,09345.03495785,W,0.482,33.532,180320,11.5985,E,D",
            {"kind": "RMC", "tod": 13 * 3600 + 28 * 60 + 27.2, "lat": -(41 + 34.49941239 / 60),
             "lon": -(93 + 45.03495785 / 60), "speed_kn": 0.482, "course": 33.532, "date": (2020, 3, 18),
             "mode": "D", "valid": True, "digits": 8},
        ),
        (
            "RMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A",
            {"date": (1999, 8, 22), "valid": True},
        ),
        (
            "RMC,053229.438,V,,,,,,,020315,,,N",
            {"valid": False, "lat": None, "date": (2015, 3, 2), "mode": "N"},
        ),
        (
            "GNS,053232.438,3114.8789,N,12135.2442,E,ANNA,07,1.2,153.8,8.3,,0000",
            {"kind": "GNS", "mode": "A", "sats": 7, "alt": 153.8, "valid": True},
        ),
        ("GNS,053229.438,,,,,NNNN,00,,,0.0,,0000", {"mode": "N", "valid": False, "lat": None}),
        ("VTG,77.5,T,93.3,M,5.2,N,9.7,K", {"kind": "VTG", "course": 77.5, "speed_kn": 5.2, "tod": None}),
        ("VTG,054.7,034.4,005.5,010.2", {"course": 54.7, "speed_kn": 5.5}),  # NMEA 1.5 form
        ("VTG,,T,,M,0.00,N,10.00,K,A", {"speed_kn": 0.0}),
        ("VTG,,T,,M,,N,18.52,K,A", {"speed_kn": pytest.approx(10.0)}),
        ("GSA,A,3,22,18,14,12,31,24,,,,,,,2.5,1.2,2.2", {"kind": "GSA", "mode": "3D", "sats": 6, "hdop": 1.2}),
        ("GSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1", {"mode": None, "sats": 0}),
        ("ZDA,194058.00,07,09,2018,00,00", {"kind": "ZDA", "date": (2018, 9, 7)}),
        ("GLL,4426.1130,N,07140.5579,W,194102,A", {"kind": "GLL", "lat": 44 + 26.113 / 60, "valid": True}),
        ("GGA,125106,3854.5087,N,07726.4523,W,8,10,2.0,268.8,M,-33.9,M,,", {"simulated": True}),
        ("RMC,125106,V,3854.5087,N,07726.4523,W,0.0,0.0,241011,10.5,W,S", {"simulated": True}),
        ("GGA,194050.00,4221.8237733,N,07101.9411707,W,1,00,3.3,10.835,M,-33.320,M,,", {"valid": False}),
    ],
)
def test_sentence_fields(talker, body, expected):
    """Each sentence type decodes the same from every talker, field by field."""
    sentence, reason = decode_line(line(talker + body))
    assert reason == "sentences_ok"
    assert sentence.talker == talker
    for name, value in expected.items():
        actual = getattr(sentence, name)
        if isinstance(value, float):
            assert actual == pytest.approx(value, abs=1e-9), name
        else:
            assert actual == value, name


# ---------------------------------------------------------------- epochs and fixes
def test_gga_rmc_epoch_makes_one_fix():
    """GGA + RMC of one second merge into one fix with all fields, speed in km/h."""
    result = feed(
        "GNGGA,132827.20,4134.49941239,N,09345.03495785,W,2,10,0.9,280.340,M,-31.442,M,13.2,0133",
        "GNRMC,132827.20,A,4134.49941239,N,09345.03495785,W,0.482,33.532,180320,11.5985,E,D",
    )
    assert result.fixes == [
        Fix(
            time=datetime(2020, 3, 18, 13, 28, 27, 200000, tzinfo=UTC),
            lat=pytest.approx(41.574990207, abs=1e-9),
            lon=pytest.approx(-93.750582631, abs=1e-9),
            speed_kmh=pytest.approx(0.482 * 1.852),
            course_deg=33.532,
            alt_m=280.34,
            quality=2,
            mode="D",
            sats=10,
            hdop=0.9,
            talker="GN",
        )
    ]
    assert result.counts["sentences_ok"] == 2 and result.counts["fix"] == 1


def test_most_precise_coordinates_win():
    """An epoch keeps the coordinates with the most decimals, whatever the order."""
    precise = "GPGGA,120000.00,4807.0381234,N,01131.0004321,E,1,08,0.9,545.4,M,46.9,M,,"
    coarse = "GPRMC,120000.00,A,4807.038,N,01131.000,E,1.0,10.0,010326,,,A"
    for order in ((precise, coarse), (coarse, precise)):
        (fix,) = feed(*order).fixes
        assert fix.lat == pytest.approx(48 + 7.0381234 / 60, abs=1e-12)
        assert fix.lon == pytest.approx(11 + 31.0004321 / 60, abs=1e-12)
        assert fix.speed_kmh == pytest.approx(1.852)


def test_epoch_boundary_and_vtg_speed():
    """A new time completes the epoch; a VTG belongs to the epoch it arrives in."""
    result = feed(
        "GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPVTG,84.4,T,,M,10.0,N,18.5,K,A",
        "GPZDA,120000,01,03,2026,00,00",
        "GPGGA,120001,4807.039,N,01131.001,E,1,08,0.9,545.4,M,46.9,M,,",
    )
    first, second = result.fixes
    assert first.time == datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert first.speed_kmh == pytest.approx(18.52) and first.course_deg == 84.4
    assert second.time == datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC)  # date carried from the ZDA
    assert second.speed_kmh is None


def test_date_rolls_over_at_midnight():
    """A GGA-only epoch after midnight takes the next day of the last RMC date."""
    stream = NmeaStream()
    feed("GPRMC,235959,A,4807.038,N,01131.000,E,0.0,0.0,280226,,,A", stream=stream)
    (fix,) = feed("GPGGA,000001,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", stream=stream).fixes
    assert fix.time == datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received_at", "expected"),
    [
        (datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC), datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)),
        (datetime(2026, 3, 3, 0, 0, 5, tzinfo=UTC), datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_live_undated_stream_uses_received_date(received_at, expected):
    """Live and no date known yet: the date of received_at, with the midnight rule."""
    tod = expected.strftime("%H%M%S")
    result = feed(f"GPGGA,{tod},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", received_at=received_at)
    assert [f.time for f in result.fixes] == [expected]
    assert result.counts["date_from_clock"] == 1


def test_backfill_holds_undated_epochs_until_a_date():
    """Backfill: GGA-only epochs wait for the first RMC date, then are dated backwards from it."""
    stream = NmeaStream()
    first = feed("GPGGA,235958,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", flush=False, stream=stream)
    assert first.fixes == []
    second = feed(
        "GPGGA,235959,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPRMC,000000,A,4807.038,N,01131.000,E,0.0,0.0,010326,,,A",
        flush=False,
        stream=stream,
    )
    assert second.fixes == []  # the RMC epoch itself is still pending (flush=False)
    final = stream.flush()
    assert [f.time for f in final.fixes] == [
        datetime(2026, 2, 28, 23, 59, 58, tzinfo=UTC),
        datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    ]


def test_backfill_never_dated_is_dropped_and_counted():
    """Backfill epochs still undated at flush() are dropped and counted no_date."""
    stream = NmeaStream()
    feed("GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", flush=False, stream=stream)
    result = stream.flush()
    assert result.fixes == [] and result.counts["no_date"] == 1


def test_pending_epoch_kept_across_backfill_chunks():
    """flush=False keeps the pending epoch: GGA and RMC split across two chunks make one fix."""
    stream = NmeaStream()
    a = feed("GPRMC,120000,A,4807.038,N,01131.000,E,5.0,10.0,010326,,,A", flush=False, stream=stream)
    b = feed("GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", flush=False, stream=stream)
    assert a.fixes == [] and b.fixes == []
    (fix,) = stream.flush().fixes
    assert fix.speed_kmh == pytest.approx(9.26) and fix.alt_m == 545.4


@pytest.mark.parametrize(
    ("bodies", "signal", "time"),
    [
        (
            ["GPGGA,053229.438,,,,,0,00,,,M,0.0,M,,0000", "GNRMC,053229.438,V,,,,,,,020315,,,N"],
            (0, "N", 0),
            datetime(2015, 3, 2, 5, 32, 29, 438000, tzinfo=UTC),
        ),
        (["GNGNS,053229.438,,,,,NNNN,00,,,0.0,,0000"], (None, "N", 0), datetime(2026, 3, 2, 5, 32, 29, 438000, tzinfo=UTC)),
        (["GPRMC,053229,A,,,,,,,020315,,,A"], (None, "A", None), datetime(2015, 3, 2, 5, 32, 29, tzinfo=UTC)),
        (["GPRMC,,V,,,,,,,,,,N"], (None, "N", None), None),  # no time at all
    ],
)
def test_void_epochs_update_signal_only(bodies, signal, time):
    """No-fix / void epochs give a SignalUpdate and no Fix."""
    result = feed(*bodies)
    assert result.fixes == []
    (update,) = result.signal
    assert (update.quality, update.mode, update.sats) == signal
    assert update.time == time


@pytest.mark.parametrize(
    "bodies",
    [
        ["GPGGA,125106,3854.5087,N,07726.4523,W,8,10,2.0,268.8,M,-33.9,M,,"],
        ["GPRMC,125106,A,3854.5087,N,07726.4523,W,0.0,0.0,241011,10.5,W,S"],
        ["GNGNS,125106,3854.5087,N,07726.4523,W,SS,07,1.2,153.8,8.3,,"],
    ],
)
def test_simulation_mode_is_not_a_fix(bodies):
    """GGA quality 8 and RMC/GNS mode S are counted as simulated and emit nothing."""
    result = feed(*bodies)
    assert result.fixes == [] and result.signal == [] and result.counts["simulated"] == 1


def test_bad_sentences_in_payload_are_dropped_and_counted():
    """Bad checksum / missing checksum / garbage lines are skipped; good ones still make the fix."""
    good = line("GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    payload = b"\xde\xad\xbe\xef\n$GPRMC,120000,A,4807.038,N,01131.000,E,5.0,10.0,010326,,,A*00\n" + good + b"\n$GPVTG,1\n"
    result = NmeaStream().feed(payload, NOW)
    assert result.counts["bad_checksum"] == 1
    assert result.counts["no_checksum"] == 1
    assert result.counts["garbage"] == 1
    assert len(result.fixes) == 1


# ---------------------------------------------------------------- properties
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_feed_never_raises_on_arbitrary_bytes(payload, flush):
    """NmeaStream.feed accepts any bytes without raising."""
    stream = NmeaStream()
    stream.feed(payload, NOW, flush=flush)
    stream.flush()


NMEA_CHARS = st.sampled_from(list(b"$*,.0123456789ANSEWVGPRMCNTLKD-\r\n"))


@settings(max_examples=300, deadline=None)
@given(st.lists(NMEA_CHARS, max_size=200))
def test_feed_never_raises_on_nmea_like_bytes(chars):
    """NMEA-shaped noise (right alphabet, wrong structure) never raises either."""
    NmeaStream().feed(bytes(chars), NOW)


PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="$*"), max_size=80)


@given(PRINTABLE)
def test_format_sentence_checksum_round_trip(body):
    """format_sentence frames a body whose checksum verifies and decodes to a known reason."""
    framed = format_sentence(body)
    assert framed == f"${body}*{checksum(body)}"
    assert int(framed[-2:], 16) == _xor(body)
    assert decode_line(framed.encode())[1] not in ("bad_checksum", "no_checksum", "truncated")


def _xor(text: str) -> int:
    value = 0
    for char in text.encode():
        value ^= char
    return value


@st.composite
def gga_bodies(draw):
    """GGA bodies with arbitrary digits in the coordinate fields (possibly out of range)."""
    lat = draw(st.from_regex(r"[0-9]{1,3}\.[0-9]{0,8}", fullmatch=True))
    lon = draw(st.from_regex(r"[0-9]{1,4}\.[0-9]{0,8}", fullmatch=True))
    ns, ew = draw(st.sampled_from("NS")), draw(st.sampled_from("EW"))
    talker = draw(st.sampled_from(TALKERS))
    return f"{talker}GGA,120000.00,{lat},{ns},{lon},{ew},1,08,0.9,545.4,M,46.9,M,,"


@settings(max_examples=300, deadline=None)
@given(gga_bodies())
def test_decoded_coordinates_always_in_range(body):
    """Whatever digits arrive, a decoded fix has lat within ±90 and lon within ±180."""
    for fix in feed(body).fixes:
        assert -90.0 <= fix.lat <= 90.0
        assert -180.0 <= fix.lon <= 180.0
