"""Exit policies: each rule on hand-computed probabilities, and for every registered policy the
contract of early exit (speed 0 == full model, speed 1 == layer 1, alone == in batch == padded,
online == offline sweep), through the fused path and eager; patience state follows its samples."""
import math

import pytest
import torch

from uer.registry import RegistryError
import torch.nn.functional as F

from tests.test_fastbert import batch, fastbert_model
from uer.config import ConfigError
from uer.fastbert.inference import EarlyExit, exits_for_speeds
from uer.exit.policies import POLICIES, normalized_entropy, resolve
from uer.exit.policies.confidence import confidence_threshold
from uer.exit.policies.patience import PatiencePolicy, patience_for

LAYERS = 6
SPEEDS = (0.0, 0.3, 0.6, 0.9, 1.0)
MIXED = (0.3, 0.6, 0.9)  # where batches shrink: checked sample by sample too


@pytest.fixture(scope="module")
def model():
    return fastbert_model(layers=LAYERS)


def decide(policy, probs, speed, layer=0, layers=LAYERS):
    probs = torch.tensor(probs)
    return resolve(policy).exits(probs, layer, resolve(policy).start(len(probs), probs.shape[1], layers, speed), False).tolist()


def test_registry_lists_every_policy_and_rejects_unknown_and_duplicate_names():
    assert POLICIES.names() == ["confidence", "entropy", "multi_label_entropy", "patience", "regression_patience", "topk_entropy"]
    with pytest.raises(ConfigError, match="unknown exit-policy name 'pabee'; valid exit-policy names: confidence, entropy, "
                                          "multi_label_entropy, patience, regression_patience, topk_entropy"):
        resolve("pabee")
    with pytest.raises(RegistryError, match="registered twice"):
        POLICIES.register("patience", config=object)(PatiencePolicy)
    with pytest.raises(ValueError, match="k >= 2"):
        resolve({"name": "topk_entropy", "k": 1})


def test_entropy_decision_by_hand():
    # H([0.9, 0.05, 0.05]) = -(0.9 ln 0.9 + 2 * 0.05 ln 0.05) = 0.39439 nats; / ln 3 = 0.35899
    p = [[0.9, 0.05, 0.05]]
    assert math.isclose(float(normalized_entropy(torch.tensor(p))), 0.35899, abs_tol=1e-5)
    assert decide("entropy", p, 0.36) == [True] and decide("entropy", p, 0.358) == [False]
    assert decide("entropy", [[1.0, 0.0, 0.0]], 0.0) == [False]  # entropy 0 is not below 0: speed 0 never exits


def test_confidence_decision_by_hand():
    assert confidence_threshold(0.5, 3) == pytest.approx(2 / 3)  # 1 - 0.5 * (1 - 1/3)
    assert decide("confidence", [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]], 0.5) == [True, False]
    assert decide("confidence", [[1.0, 0.0, 0.0]], 0.0) == [False]  # threshold 1: nothing is above it


def test_topk_entropy_decision_by_hand():
    # top 2 of [0.6, 0.0475 x 8, 0.02] = 0.6, 0.0475 -> renormalised 0.92664, 0.07336;
    # H = 0.26224 nats, / ln 2 = 0.37834. The full normalised entropy is 0.66995 (ten labels).
    p = [[0.6] + [0.0475] * 8 + [0.02]]
    assert math.isclose(float(normalized_entropy(torch.tensor(p))), 0.66995, abs_tol=1e-4)
    assert decide("topk_entropy", p, 0.38) == [True] and decide("topk_entropy", p, 0.37) == [False]
    assert decide("entropy", p, 0.66) == [False]  # what topk_entropy fixes: sure between the leaders
    three = {"name": "topk_entropy", "k": 3}  # top 3: 0.6, 0.0475, 0.0475 -> [0.86331, 0.06835, 0.06835]; H / ln 3 = 0.44935
    assert decide(three, p, 0.45) == [True] and decide(three, p, 0.449) == [False]


def test_patience_decision_by_hand():
    assert [patience_for(s, 5) for s in (0.0, 0.5, 0.6, 0.875, 1.0)] == [4, 2, 2, 1, 0]  # (1 - s) * 4, half up
    assert patience_for(0.9, 6) == 1  # (1 - 0.9) * 5 is 0.4999... in floats: still half up
    policy = resolve("patience")
    argmax = [[1, 1, 1, 0, 0], [0, 1, 0, 1, 0], [2, 2, 0, 0, 0]]  # three samples, five layers, t = 2
    state = policy.start(3, 3, 5, 0.5)
    out = []
    for layer in range(4):
        probs = F.one_hot(torch.tensor([row[layer] for row in argmax]), 3).float() * 0.5 + 0.5 / 3
        out.append(policy.exits(probs, layer, state, False).tolist())
    assert out == [[False] * 3, [False] * 3, [True, False, False], [False, False, False]]
    assert state.count.tolist() == [0, 0, 1]  # sample 0's run of 1s ended at layer 4; sample 2: label 0 at layers 3 and 4


def test_patience_state_follows_its_samples_when_the_batch_shrinks():
    """Samples leave in another order than they came in; the counters must go with them."""
    policy = resolve("patience")
    labels = {0: [0, 0, 0, 1, 1, 1], 1: [2, 1, 1, 1, 1, 1], 2: [1, 1, 2, 2, 2, 2], 3: [0, 1, 2, 0, 1, 2]}
    probs = torch.stack([F.one_hot(torch.tensor(labels[s]), 3).float() * 0.7 + 0.1 for s in range(4)])  # (4, 6, 3)
    speed = 0.6  # t = round(0.4 * 5) = 2
    state, alive, exit_layer = policy.start(4, 3, 6, speed), torch.arange(4), {}
    for layer in range(6):
        done = policy.exits(probs[alive, layer], layer, state, layer == 5)
        for s in alive[done].tolist():
            exit_layer[s] = layer + 1
        keep = (~done).nonzero().squeeze(1)
        keep = keep.flip(0)  # a new order too: the state must be selected with the same index
        alive, state = alive[keep], state.select(keep)
    # sample 0 leaves at layer 3 (0,0,0), 1 at layer 4 (1,1,1 from layer 2), 2 at layer 5, 3 at the last
    assert exit_layer == {0: 3, 1: 4, 2: 5, 3: 6}
    offline = exits_for_speeds(probs, [speed], policy="patience")[0]
    assert offline.exit_layer.tolist() == [3, 4, 5, 6]


@pytest.mark.parametrize("runtime", ["eager", "fused", "onnxruntime"])
@pytest.mark.parametrize("policy", POLICIES.names())
def test_policy_contract(model, policy, runtime):
    runner = EarlyExit(model, runtime=runtime)
    assert runner.name == runtime, runner.reason
    src, seg = batch(n=8)
    lengths = (seg > 0).sum(1)
    layer_probs = runner.layer_probs(src, seg)

    never = runner.predict(src, seg, 0.0, policy=policy)  # a threshold that never exits early
    assert (never.exit_layer == LAYERS).all()
    torch.testing.assert_close(never.probs, runner.full_model_probs(src, seg), rtol=0, atol=0)
    first = runner.predict(src, seg, 1.0, policy=policy)
    assert (first.exit_layer == 1).all()
    torch.testing.assert_close(first.probs, layer_probs[:, 0], rtol=0, atol=0)

    spread = set()
    for speed, offline in zip(SPEEDS, exits_for_speeds(layer_probs, SPEEDS, policy=policy)):
        together = runner.predict(src, seg, speed, policy=policy)
        spread |= set(together.exit_layer.tolist())
        assert torch.equal(together.exit_layer, offline.exit_layer), speed  # online == offline sweep
        torch.testing.assert_close(together.probs, offline.probs, rtol=1e-4, atol=1e-5)
        if speed not in MIXED:
            continue
        for i in range(len(src)):
            n = int(lengths[i])
            alone = runner.predict(src[i:i + 1, :n], seg[i:i + 1, :n], speed, policy=policy)
            padded = runner.predict(F.pad(src[i:i + 1, :n], (0, 9)), F.pad(seg[i:i + 1, :n], (0, 9)), speed, policy=policy)
            for other in (alone, padded):
                assert int(other.exit_layer) == int(together.exit_layer[i]), (speed, i)
                torch.testing.assert_close(other.probs[0], together.probs[i], rtol=1e-4, atol=1e-5)
    assert len(spread) >= 3, spread  # batches really shrink under this policy
