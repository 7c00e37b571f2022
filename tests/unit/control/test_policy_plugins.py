"""Plugin policies: ``kind`` an import path or a ``diffstream.policies`` entry point, a
``PolicyModel`` subclass or a plain class with ``budget_bits``; the built-in union's
behaviour and messages unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from diffstream.control.policies import (
    ClassPolicy,
    PolicySpec,
    RatePolicy,
    entry_point_policies,
    parse_policy,
)
from diffstream.plugins import POLICIES_GROUP
from tests.conftest import ROOT
from tests.support.plugins import (
    MODEL_POLICY,
    PLAIN_POLICY,
    plugin_dir,
    write_distribution,
    write_module,
)
from tests.unit.control.test_policy import make_obs

__all__ = ["plugin_dir"]  # the fixture


class Holder(BaseModel):
    policy: PolicySpec


def errors_of(data: dict) -> list[dict]:
    with pytest.raises(ValidationError) as info:
        Holder.model_validate({"policy": data})
    return info.value.errors()


def test_a_policy_model_subclass_by_import_path(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pp_share", MODEL_POLICY)
    held = Holder.model_validate({"policy": {"kind": "pp_share:Share", "share": 0.25}})
    policy = held.policy
    assert type(policy).__name__ == "Share" and policy.kind == "pp_share:Share"
    obs = make_obs(throughput_bps=(100_000.0,))
    assert policy.budget_bits(obs) == 2500  # 100 kbit/s x 0.1 s x 0.25
    # the dump keeps the plugin's fields and validates back to the same policy (workers)
    dumped = held.model_dump(mode="json")
    assert dumped == {"policy": {"kind": "pp_share:Share", "share": 0.25}}
    assert Holder.model_validate(dumped).policy == policy


def test_a_plugin_policys_own_fields_validate_its_options(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pp_share2", MODEL_POLICY)
    errs = errors_of({"kind": "pp_share2:Share", "share": 2, "shaer": 1})
    assert {(e["loc"], e["type"]) for e in errs} == {
        (("policy", "share"), "less_than_equal"), (("policy", "shaer"), "extra_forbidden")}


def test_a_plain_class_with_an_options_model(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pp_half", PLAIN_POLICY)
    policy = parse_policy({"kind": "pp_half:Half", "factor": 0.5})
    assert isinstance(policy, ClassPolicy) and policy.label == "half(x0.5)"
    assert policy.budget_bits(make_obs(max_bits=1000)) == 250
    default = parse_policy({"kind": "pp_half:Half"})
    assert default.model_dump() == {"kind": "pp_half:Half", "factor": 1.0}  # defaults shown
    assert parse_policy(default.model_dump()).budget_bits(make_obs(max_bits=1000)) == 500
    errs = errors_of({"kind": "pp_half:Half", "factor": 3})
    assert errs[0]["loc"] == ("policy", "factor")
    errs = errors_of({"kind": "pp_half:Half", "factr": 1})
    assert errs[0]["loc"] == ("policy", "factr") and "options: factor" in errs[0]["msg"]


def test_a_plain_class_without_options_model_binds_its_signature(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pp_sig", "class P:\n    def __init__(self, bits=100):\n"
                 "        self.bits = bits\n    def budget_bits(self, obs):\n"
                 "        return self.bits\n")
    assert parse_policy({"kind": "pp_sig:P", "bits": 7}).budget_bits(make_obs()) == 7
    errs = errors_of({"kind": "pp_sig:P", "bitz": 7})
    assert errs[0]["loc"] == ("policy", "kind") and "bitz" in errs[0]["msg"]


@pytest.mark.parametrize(("source", "ref", "needle"), [
    (None, "pp_absent:P", "no module named 'pp_absent'; is the module on PYTHONPATH?"),
    ("class Q: pass\n", "pp_noclass:P", "has no 'P'"),
    ("def P(): pass\n", "pp_func:P", "is a function, not a class"),
    ("class P:\n    pass\n", "pp_nobudget:P", "has no budget_bits(obs) method"),
    ("from diffstream.control.policies import PolicyModel\nclass P(PolicyModel):\n    pass\n",
     "pp_abstract:P", "has no budget_bits(obs) method"),
    ("from typing import Literal\nfrom diffstream.control.policies import PolicyModel\n"
     "class P(PolicyModel):\n    kind: Literal['p'] = 'p'\n    def budget_bits(self, obs):\n"
     "        return 1\n", "pp_literal:P", "do not redeclare it as a Literal"),
    ("raise ValueError('bad config')\n", "pp_raises:P", "ValueError: bad config"),
])
def test_errors_are_located_at_kind(plugin_dir: Path, source: str | None, ref: str,
                                    needle: str) -> None:
    if source is not None:
        write_module(plugin_dir, ref.split(":")[0], source)
    errs = errors_of({"kind": ref})
    assert len(errs) == 1 and errs[0]["loc"] == ("policy", "kind")
    assert needle in errs[0]["msg"]


def test_entry_point_policies(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pp_ep", MODEL_POLICY)
    write_distribution(plugin_dir, "my-policies",
                       {POLICIES_GROUP: {"share": "pp_ep:Share", "rate": "pp_ep:Share"}})
    assert entry_point_policies() == ["share"]  # 'rate' is a built-in kind: it wins
    assert type(parse_policy({"kind": "share"})).__name__ == "Share"
    assert isinstance(parse_policy({"kind": "rate"}), RatePolicy)


def test_builtin_messages_are_unchanged() -> None:
    (err,) = errors_of({"kind": "magic"})
    assert err["type"] == "union_tag_invalid"
    assert "does not match any of the expected tags: 'fixed', 'rate'" in err["msg"]
    (err,) = errors_of({"window": 3})
    assert err["type"] == "union_tag_not_found"
    assert errors_of({"kind": "rate", "windw": 3})[0]["loc"] == ("policy", "rate", "windw")


def test_the_example_aimd_policy_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugin_codec" / "src"))
    aimd = parse_policy({"kind": "diffstream_plugin_example.policy:AIMDPolicy",
                         "start_bpp": 0.25, "step_bpp": 0.05, "beta": 0.5})
    clear = {"throughput_bps": (100_000.0,), "rtt_s": 0.2, "backlog_bytes": 0.0}
    # start 0.25 bpp x 4096 px = 1024, + 0.05 bpp = 204 per clear frame
    assert aimd.budget_bits(make_obs(now_s=0.0, **clear)) == 1228
    assert aimd.budget_bits(make_obs(now_s=0.1, **clear)) == 1432
    # 1000 bytes queued at 100 kbit/s = 80 ms > 50 ms: halve, then hold for one RTT
    congested = {**clear, "backlog_bytes": 1000.0}
    assert aimd.budget_bits(make_obs(now_s=0.2, **congested)) == 716
    assert aimd.budget_bits(make_obs(now_s=0.3, **congested)) == 716  # held (< 0.2 + rtt)
    assert aimd.budget_bits(make_obs(now_s=0.4, **congested)) == 358
    lossy = {**clear, "loss_rate": 0.1}
    assert aimd.budget_bits(make_obs(now_s=0.7, **lossy)) == 179
    assert aimd.budget_bits(make_obs(now_s=0.8, min_bits=300, **lossy)) == 300  # floor
    assert aimd.label == "aimd(+0.05,x0.5)"


def test_a_plugin_policy_can_ask_for_the_rate_quality_curve(plugin_dir: Path) -> None:
    from diffstream.scenario.schema import ArmSpec

    write_module(plugin_dir, "pp_rq", "from typing import ClassVar\n" + MODEL_POLICY +
                 "\n\nclass RQ(Share):\n    needs_rate_quality: ClassVar[bool] = True\n")
    write_module(plugin_dir, "pp_rq_plain", PLAIN_POLICY + "\n\nclass RQ(Half):\n"
                 "    needs_rate_quality = True\n")
    asks = [ArmSpec(codec="jpeg", policy={"kind": k}).needs_rate_quality
            for k in ("pp_rq:Share", "pp_rq:RQ", "pp_rq_plain:Half", "pp_rq_plain:RQ", "mpc",
                      "rate")]
    assert asks == [False, True, False, True, True, False]


STATEFUL_PLAIN = """
class Counting:
    def __init__(self):
        self.reports = []

    def on_report(self, report, now_s):
        self.reports.append((report.seq, now_s))

    def budget_bits(self, obs):
        return 100 * len(self.reports)
"""


def test_a_plain_class_gets_the_report_hook_and_each_copy_its_own_state(
        plugin_dir: Path) -> None:
    from tests.unit.control.test_policy_gcc import report

    write_module(plugin_dir, "pp_count", STATEFUL_PLAIN)
    policy = parse_policy({"kind": "pp_count:Counting"})
    mine = policy.model_copy(deep=True)  # what each SenderCore does
    for k in range(3):
        mine.on_report(*report(k, 0.0))
    assert mine.budget_bits(make_obs()) == 300
    assert policy.budget_bits(make_obs()) == 0  # the original saw nothing
    write_module(plugin_dir, "pp_half3", PLAIN_POLICY)
    half = parse_policy({"kind": "pp_half3:Half"})
    half.on_report(*report(0, 0.0))  # a class without the hook: nothing happens
    assert half.budget_bits(make_obs(max_bits=1000)) == 500


def test_a_plain_class_prediction_is_forwarded(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pp_pred", "class P:\n    def budget_bits(self, obs):\n"
                 "        return 1\n    def predicted_throughput_bps(self, obs):\n"
                 "        return 123.0\n")
    assert parse_policy({"kind": "pp_pred:P"}).predicted_throughput_bps(make_obs()) == 123.0
    write_module(plugin_dir, "pp_nopred", "class P:\n    def budget_bits(self, obs):\n"
                 "        return 1\n")
    assert parse_policy({"kind": "pp_nopred:P"}).predicted_throughput_bps(make_obs()) is None
