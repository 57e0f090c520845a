"""The pure world model: supply side, faults, energy counters, determinism (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from service.config.site import Site
from simulators.power import (
    COOLDOWN_S,
    KEY_AUTO,
    KEY_MANUAL,
    KEY_RESET_ALARMS,
    KEY_START,
    KEY_STOP,
    OVERLOAD_TRIP_DELAY_S,
)
from simulators.registers import GENCOMM_CONTROL_MODE, REGISTER_MAPS
from simulators.world import World, WorldError
from tests.simulators.conftest import hold_rooms, make_world

# demo site: ats-1 [grid-a, grid-b, gen-1], transfer 3 s, retransfer 30 s; gen-1 start limit 10 s (start 5 s)


def ats(w: World) -> dict[str, Any]:
    return dict(w.state()["transfer_switches"]["ats-1"])


def gen(w: World) -> dict[str, Any]:
    return dict(w.state()["generators"]["gen-1"])


def meter(w: World, device_id: str) -> dict[str, Any]:
    return dict(w.state()["devices"][device_id])


def run_until(w: World, check: Any, limit_s: float, step_s: float = 0.5) -> float:
    """Step until check(w) holds; the simulated seconds it took."""
    start = w.elapsed_s
    while not check(w):
        assert w.elapsed_s - start < limit_s, f"not reached within {limit_s} simulated s"
        w.step(step_s)
    return w.elapsed_s - start


def test_healthy_site_runs_on_the_preferred_grid(demo: Site) -> None:
    w = make_world(demo)
    assert ats(w)["position"] == "grid-a" and ats(w)["code"] == 2
    assert gen(w)["state"] == "stopped" and gen(w)["mains_breaker_closed"] and not gen(w)["breaker_closed"]
    load_w = w.state()["load_kw"] * 1000
    assert meter(w, "meter-grid-a")["power_w"] == pytest.approx(load_w, abs=0.5)
    assert meter(w, "meter-grid-b")["power_w"] == 0
    depts = sum(meter(w, f"meter-dept-{d}")["power_w"] for d in ("admin", "marketing", "engineering", "it"))
    assert depts == pytest.approx(load_w, abs=1)


def test_source_loss_transfers_within_the_transfer_delay(demo: Site) -> None:
    w = make_world(demo)
    w.fault("source_loss", "grid-a")
    assert ats(w)["position"] is None, "the load is dead until the switch moves"
    assert meter(w, "meter-dept-it")["power_w"] == 0
    took = run_until(w, lambda x: ats(x)["code"] == 3, limit_s=10)
    assert 3.0 <= took <= 3.0 + 0.5 + 0.5  # transfer delay + operating time through position 0
    assert ats(w)["position"] == "grid-b" and ats(w)["cycles"] == 1
    assert meter(w, "meter-grid-b")["power_w"] > 0 and meter(w, "meter-grid-a")["power_w"] == 0
    assert gen(w)["state"] == "stopped", "a healthy grid left: no generator start"


def test_preferred_source_is_taken_back_after_the_retransfer_delay(demo: Site) -> None:
    w = make_world(demo)
    w.fault("source_loss", "grid-a")
    w.step(5)
    w.fault("source_restore", "grid-a")
    took = run_until(w, lambda x: ats(x)["code"] == 2, limit_s=40)
    assert 30.0 <= took <= 31.0
    assert ats(w)["position"] == "grid-a" and ats(w)["cycles"] == 2


def test_stuck_switch_does_not_move_and_the_load_stays_dead(demo: Site) -> None:
    w = make_world(demo)
    w.fault("ats_stuck", "ats-1")
    w.fault("source_loss", "grid-a")
    w.step(60)
    assert ats(w)["code"] == 2 and ats(w)["stuck"] and ats(w)["cycles"] == 0
    assert ats(w)["position"] is None and w.state()["load_kw"] == 0
    assert all(meter(w, d)["power_w"] == 0 for d in ("meter-grid-a", "meter-grid-b", "meter-dept-admin"))
    assert gen(w)["state"] == "stopped", "grid-b is healthy, so nothing asks the generator to start"
    w.clear_faults()
    w.step(5)
    assert ats(w)["position"] == "grid-a" and w.state()["load_kw"] > 0


def test_both_grids_lost_starts_the_generator_and_it_takes_the_load(demo: Site) -> None:
    w = make_world(demo)
    starts = gen(w)["starts"]
    w.fault("source_loss", "grid-a")
    w.fault("source_loss", "grid-b")
    w.step(3)
    assert gen(w)["start_demand"] and gen(w)["state"] == "pre-start"
    took = run_until(w, lambda x: gen(x)["ready"], limit_s=20) + 3
    assert took == pytest.approx(3 + 5, abs=0.5), "mains-fail delay + start time"
    g = gen(w)
    assert g["state"] == "running" and g["breaker_closed"] and not g["mains_breaker_closed"]
    assert g["starts"] == starts + 1
    assert ats(w)["position"] == "gen-1"
    assert g["power_kw"] == pytest.approx(w.state()["load_kw"], abs=0.01)
    assert meter(w, "meter-gen")["power_w"] == pytest.approx(g["power_kw"] * 1000, abs=1)
    assert meter(w, "meter-dept-it")["power_w"] > 0


def test_generator_hands_back_cools_down_and_stops(demo: Site) -> None:
    w = make_world(demo)
    w.fault("source_loss", "grid-a")
    w.fault("source_loss", "grid-b")
    run_until(w, lambda x: gen(x)["breaker_closed"], limit_s=20)
    w.fault("source_restore", "grid-b")
    w.step(1)
    assert ats(w)["code"] == 3 and gen(w)["breaker_closed"], "still on the generator during the retransfer delay"
    took = run_until(w, lambda x: not gen(x)["breaker_closed"], limit_s=40)
    assert took == pytest.approx(29.5, abs=1)
    assert gen(w)["state"] == "cooling" and gen(w)["mains_breaker_closed"]
    assert ats(w)["position"] == "grid-b"
    took = run_until(w, lambda x: gen(x)["state"] == "stopped", limit_s=COOLDOWN_S + 5)
    assert took == pytest.approx(COOLDOWN_S, abs=1)


def test_slow_start_delays_readiness(demo: Site) -> None:
    w = make_world(demo)
    w.fault("generator_slow_start", "gen-1", delay_s=12)
    w.fault("source_loss", "grid-a")
    w.fault("source_loss", "grid-b")
    took = run_until(w, lambda x: gen(x)["ready"], limit_s=40)
    assert took == pytest.approx(3 + 5 + 12, abs=0.5)


def test_fail_to_start_never_gets_ready_and_latches_the_alarm(demo: Site) -> None:
    w = make_world(demo)
    w.fault("generator_fail_start", "gen-1")
    w.fault("source_loss", "grid-a")
    w.fault("source_loss", "grid-b")
    w.step(60)
    g = gen(w)
    assert not g["ready"] and g["state"] == "stopped" and g["fail_to_start"]
    assert w.state()["load_kw"] == 0 and ats(w)["position"] is None
    bits = meter_bits(w)
    assert bits & 0b100000 and bits & 0b10000 and not bits & 0b1000
    w.clear_faults()
    assert not gen(w)["fail_to_start"]


def meter_bits(w: World) -> int:
    return int(w.state()["devices"]["genset-1"]["breaker_status"])


def test_interlock_failure_backfeeds_the_grid(demo: Site) -> None:
    w = make_world(demo)
    w.generator_key("genset-1", KEY_MANUAL)
    w.generator_key("genset-1", KEY_START)
    run_until(w, lambda x: gen(x)["ready"], limit_s=20)
    assert not gen(w)["breaker_closed"], "manual start with the grid present: the generator runs off load"
    assert meter(w, "meter-grid-a")["power_w"] > 0
    w.fault("interlock_fail", "gen-1")
    g = gen(w)
    assert g["breaker_closed"] and g["mains_breaker_closed"]
    assert meter_bits(w) & 0b11 == 0b11
    grid = meter(w, "meter-grid-a")
    assert grid["power_w"] < 0, "the generator pushes power out through the incomer"
    w.step(600)
    after = meter(w, "meter-grid-a")
    assert after["export_kwh"] - grid["export_kwh"] == pytest.approx(-grid["power_w"] * 600 / 3.6e6, rel=0.05)
    assert after["import_kwh"] == grid["import_kwh"]


def test_interlock_failure_during_an_outage_energises_the_dead_feeder(demo: Site) -> None:
    w = make_world(demo)
    w.fault("source_loss", "grid-a")
    w.fault("source_loss", "grid-b")
    run_until(w, lambda x: gen(x)["breaker_closed"], limit_s=20)
    assert meter(w, "meter-grid-a")["voltage_v"] == 0
    w.fault("interlock_fail", "gen-1")
    grid = meter(w, "meter-grid-a")
    assert grid["voltage_v"] > 200, "the lost feeder is live again: from the generator"
    assert grid["power_w"] == pytest.approx(-0.25 * 200_000, abs=1)
    assert gen(w)["power_kw"] == pytest.approx(w.state()["load_kw"] + 50, abs=0.01)
    assert not w.state()["sources"]["grid-a"]["available"]


def test_generator_control_keys(demo: Site) -> None:
    w = make_world(demo)
    w.generator_key("genset-1", KEY_START)
    w.step(10)
    assert gen(w)["state"] == "stopped", "start works in manual mode only"
    w.generator_key("genset-1", KEY_MANUAL)
    w.generator_key("genset-1", KEY_START)
    run_until(w, lambda x: gen(x)["ready"], limit_s=20)
    w.generator_key("genset-1", KEY_AUTO)
    w.step(1)
    assert gen(w)["state"] == "cooling", "back in auto with no demand: cool down, then stop"
    w.generator_key("genset-1", KEY_STOP)
    assert gen(w)["state"] == "stopped" and gen(w)["mode"] == "stop"


def test_energy_counters_integrate_power_over_simulated_time(demo: Site) -> None:
    w = make_world(demo)
    hold_rooms(w, 100.0, "admin")
    before = meter(w, "meter-dept-admin")
    power_w = before["power_w"]
    assert power_w == pytest.approx(6000 + 2 * 100, abs=0.01)  # base load 6 kW, two plugs held at 100 W
    w.step(2 * 3600)
    after = meter(w, "meter-dept-admin")
    assert after["power_w"] == power_w
    assert after["import_kwh"] - before["import_kwh"] == pytest.approx(power_w * 2 / 1000, rel=0.005)


def test_same_seed_same_run(demo: Site) -> None:
    def scenario(seed: int) -> dict[str, Any]:
        w = make_world(demo, seed=seed)
        w.step(1800)
        w.fault("source_loss", "grid-a")
        w.fault("source_loss", "grid-b")
        w.step(120)
        w.clear_faults()
        w.step(3600)
        return w.state()

    assert scenario(7) == scenario(7)
    assert scenario(7) != scenario(8)


def test_step_size_does_not_change_the_run(demo: Site) -> None:
    a, b = make_world(demo, seed=2), make_world(demo, seed=2)
    a.step(900)
    for _ in range(1800):
        b.step(0.5)
    assert a.state() == b.state()


@pytest.mark.parametrize(
    ("fault", "target", "params", "message"),
    [
        ("meteor_strike", "grid-a", {}, "unknown fault 'meteor_strike'"),
        ("source_loss", "gen-1", {}, "'gen-1' is not a source"),
        ("ats_stuck", "grid-a", {}, "'grid-a' is not a transfer switch"),
        ("generator_fail_start", "ats-1", {}, "'ats-1' is not a generator"),
        ("device_offline", "nope", {}, "'nope' is not a device"),
        ("source_loss", "grid-a", {"delay_s": 3}, "takes no parameter delay_s"),
    ],
)
def test_bad_faults_are_refused_with_the_reason(
    demo: Site, fault: str, target: str, params: dict[str, float], message: str
) -> None:
    w = make_world(demo)
    with pytest.raises(WorldError, match=message):
        w.fault(fault, target, **params)
    assert w.state()["faults"] == []


def test_faults_are_listed_and_cleared(demo: Site) -> None:
    w = make_world(demo)
    w.fault("generator_slow_start", "gen-1", delay_s=4)
    w.fault("device_offline", "r2119-light")
    w.fault("source_loss", "grid-b")
    listed = {(f["fault"], f["target"]) for f in w.state()["faults"]}
    assert listed == {("generator_slow_start", "gen-1"), ("device_offline", "r2119-light"), ("source_loss", "grid-b")}
    assert not w.state()["devices"]["r2119-light"]["online"]
    w.fault("source_restore", "grid-b")
    assert ("source_loss", "grid-b") not in {(f["fault"], f["target"]) for f in w.state()["faults"]}
    w.clear_faults()
    assert w.state()["faults"] == [] and w.state()["devices"]["r2119-light"]["online"]


def small_generator(site: Site, rated_kw: float) -> Site:
    """The demo site with gen-1 rated at rated_kw (the demo's 200 kW carries any load the rooms can draw)."""
    generators = [g.model_copy(update={"rated_kw": rated_kw}) for g in site.generators]
    return site.model_copy(update={"generators": generators})


def blackout_on_generator(w: World) -> None:
    w.fault("source_loss", "grid-a")
    w.fault("source_loss", "grid-b")
    run_until(w, lambda x: gen(x)["breaker_closed"], limit_s=20)


def test_overload_warns_at_once_then_trips_the_generator_off_the_load(demo: Site) -> None:
    w = make_world(small_generator(demo, 60.0))
    hold_rooms(w, 2000.0)  # 44 kW of base loads and ten plugs at 2 kW: 64 kW on a 60 kW set
    blackout_on_generator(w)
    w.step(0.5)
    g = gen(w)
    assert g["power_kw"] == pytest.approx(64.0, abs=0.01) and g["overload"] and not g["overload_trip"]
    assert meter_bits(w) & 0b1100_0000 == 0b0100_0000, "bit 6: overload warning; bit 7 not yet"
    w.step(OVERLOAD_TRIP_DELAY_S - 1)
    assert gen(w)["breaker_closed"] and w.state()["load_kw"] > 60, "still carrying the load before the delay"
    assert OVERLOAD_TRIP_DELAY_S > 60, "slower than wattkeeper's generator_overload on-delay, which must see it first"
    w.step(1)
    g = gen(w)
    assert g["overload_trip"] and not g["overload"] and not g["breaker_closed"] and g["power_kw"] == 0
    assert g["state"] == "cooling", "electrical trip: off load first, then the cooling timer"
    assert meter_bits(w) & 0b1100_0011 == 0b1000_0001, "tripped, generator breaker open"
    assert ats(w)["position"] is None and w.state()["load_kw"] == 0, "the load lost its only source"
    assert meter(w, "meter-gen")["power_w"] == 0 and meter(w, "meter-dept-it")["power_w"] == 0
    run_until(w, lambda x: gen(x)["state"] == "stopped", limit_s=COOLDOWN_S + 1)
    w.step(600)
    assert gen(w)["state"] == "stopped" and gen(w)["start_demand"], "latched: no restart on the standing demand"
    w.generator_key("genset-1", KEY_RESET_ALARMS)
    run_until(w, lambda x: gen(x)["breaker_closed"], limit_s=10)
    w.step(0.5)
    assert not gen(w)["overload_trip"] and gen(w)["overload"], "reset: back on load, and overloaded again"


def test_an_overload_shorter_than_the_delay_does_not_trip(demo: Site) -> None:
    w = make_world(small_generator(demo, 60.0))
    hold_rooms(w, 2000.0)
    blackout_on_generator(w)
    w.step(OVERLOAD_TRIP_DELAY_S - 10)
    assert gen(w)["overload"]
    hold_rooms(w, 100.0)  # someone switches the heaters off: 45 kW
    w.step(1)
    assert not gen(w)["overload"]
    hold_rooms(w, 2000.0)
    w.step(OVERLOAD_TRIP_DELAY_S - 10)
    g = gen(w)
    assert g["overload"] and not g["overload_trip"] and g["breaker_closed"], "the delay starts again"
    w.step(10)
    assert gen(w)["overload_trip"]
    w.clear_faults()
    assert not gen(w)["overload_trip"], "clearing the faults resets latched alarms"


@pytest.mark.parametrize(
    ("plug_w", "load_kw", "backfeed_kw", "gen_kw"),
    [
        (0.0, 44.0, 15.0, 59.0),  # room for the whole 25 % of 60 kW above the load
        (1000.0, 54.0, 6.0, 60.0),  # only up to the rating: the feeder gets what is left
        (2000.0, 64.0, 0.0, 64.0),  # the site's own load alone overloads the set; nothing left to backfeed
    ],
)
def test_backfeed_never_drives_a_generator_beyond_its_rating(
    demo: Site, plug_w: float, load_kw: float, backfeed_kw: float, gen_kw: float
) -> None:
    w = make_world(small_generator(demo, 60.0))
    hold_rooms(w, plug_w)  # 44 kW of base loads and ten plugs
    blackout_on_generator(w)
    w.fault("interlock_fail", "gen-1")
    w.step(0.5)
    assert w.state()["load_kw"] == pytest.approx(load_kw, abs=0.01)
    assert gen(w)["power_kw"] == pytest.approx(gen_kw, abs=0.01)
    assert meter(w, "meter-grid-a")["power_w"] == pytest.approx(-backfeed_kw * 1000, abs=1)


def test_a_room_load_pushes_the_generator_past_its_security_margin(demo: Site) -> None:
    """Rated 60 kW carries 50 kW with its 20 % margin; ten 1 kW plugs on 44 kW of base load make 54 kW."""
    w = make_world(small_generator(demo, 60.0))
    hold_rooms(w, 1000.0)
    blackout_on_generator(w)
    w.step(0.5)
    g = gen(w)
    assert 60.0 / 1.2 < g["power_kw"] <= 60.0 and g["breaker_closed"] and not g["overload"]
    assert meter(w, "meter-gen")["power_w"] == pytest.approx(g["power_kw"] * 1000, abs=1)


def test_generator_manual_fault_keeps_the_set_from_starting_until_cleared(demo: Site) -> None:
    w = make_world(demo)
    w.fault("generator_manual", "gen-1")
    assert gen(w)["mode"] == "manual"
    assert REGISTER_MAPS["dse-gencomm"].render(w, "genset-1")[GENCOMM_CONTROL_MODE] == 2
    w.fault("source_loss", "grid-a")
    w.fault("source_loss", "grid-b")
    w.step(30)
    assert gen(w)["state"] == "stopped" and w.state()["load_kw"] == 0, "in manual nothing starts the set"
    w.clear_faults()  # back to auto (and the grids back)
    assert gen(w)["mode"] == "auto"
    assert REGISTER_MAPS["dse-gencomm"].render(w, "genset-1")[GENCOMM_CONTROL_MODE] == 1


def test_ats_manual_fault_keeps_the_switch_from_transferring(demo: Site) -> None:
    w = make_world(demo)
    w.fault("ats_manual", "ats-1")
    assert ats(w)["mode"] == "manual"
    assert REGISTER_MAPS["atys-pm"].render(w, "ats-1-ctrl")[20481] == 0  # ATyS mode register: manual
    w.fault("source_loss", "grid-a")
    w.step(60)
    assert ats(w)["position"] is None and ats(w)["cycles"] == 0, "in manual the switch does not transfer"
    w.clear_faults()
    assert ats(w)["mode"] == "auto"
    assert REGISTER_MAPS["atys-pm"].render(w, "ats-1-ctrl")[20481] == 1
    w.fault("source_loss", "grid-a")
    w.step(10)
    assert ats(w)["position"] == "grid-b"
