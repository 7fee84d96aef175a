"""PyTorch models read as gf.Model: hidden states and head logits equal PyTorch's forward pass (float32), lag profiles
and the input sensitivity equal PyTorch autograd's Jacobians (float64); checkpoints, prefixes, several modules and
malformed state dicts are read or refused by name."""

import sys

import pytest

torch = pytest.importorskip("torch")

import jax
import jax.numpy as jnp
import numpy as np
from torch import nn

from gradflow.data.torch_files import (
    TorchNotInstalledError,
    load_torch_model,
    model_from_state_dict,
    model_from_torch_module,
    read_torch_file,
)
from gradflow.flow.networks import model_profiles
from gradflow.lstm.model import Bidirectional, Layer, head_logits, hidden_states

D, H, T, N = 3, 4, 6, 3
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class Net(nn.Module):
    """A user's model: a recurrent module ``self.lstm`` and a Linear head ``self.fc`` on ``h_n`` (the final states
    of the top level, forward then backward)."""

    def __init__(self, cell="LSTM", layers=1, bidirectional=False, batch_first=False, k=2, **options):
        super().__init__()
        self.lstm = getattr(nn, cell)(D, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                                      **options)
        self.fc = nn.Linear(H * (2 if bidirectional else 1), k)

    def forward(self, x):
        out, state = self.lstm(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return out, self.fc(torch.cat([h_n[-2], h_n[-1]], -1) if self.lstm.bidirectional else h_n[-1])


def _assert_same_model(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def _batched(model, fn, xs):
    return np.asarray(jax.vmap(lambda x: fn(model, x))(jnp.asarray(xs)))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_hidden_states_and_head_logits_equal_pytorchs_forward(tmp_path, cell, layers, bidirectional, batch_first):
    torch.manual_seed(layers + 2 * bidirectional + 4 * batch_first)
    net = Net(cell, layers, bidirectional, batch_first).eval()
    path = tmp_path / ("model.pth" if batch_first else "model.pt")
    torch.save(net.state_dict(), path)
    model = load_torch_model(path)
    kind = Bidirectional if bidirectional else Layer
    assert [type(level) for level in model.layers] == [kind] * layers
    assert {layer.cell for level in model.layers for layer in ((level.forward, level.backward) if bidirectional
                                                                 else (level,))} == {cell.lower()}
    assert (model.input_size, model.hidden_size, model.output_size) == (D, H, 2)
    _assert_same_model(model, model_from_torch_module(net))

    xs = torch.randn(N, T, D)
    with torch.no_grad():
        out, logits = net(xs if batch_first else xs.transpose(0, 1))
    out = out if batch_first else out.transpose(0, 1)
    np.testing.assert_allclose(_batched(model, hidden_states, xs.numpy()), out.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_batched(model, head_logits, xs.numpy()), logits.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_module_without_biases_reads_zero_biases(cell):
    torch.manual_seed(7)
    net = Net(cell, 2, bias=False).eval()
    model = model_from_torch_module(net)
    for level in model.layers:
        assert not np.any(level.params.b)
    xs = torch.randn(N, T, D)
    with torch.no_grad():
        out, logits = net(xs.transpose(0, 1))
    np.testing.assert_allclose(_batched(model, hidden_states, xs.numpy()), out.transpose(0, 1).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_batched(model, head_logits, xs.numpy()), logits.numpy(), rtol=1e-5, atol=1e-6)


# ---- lag profiles against PyTorch autograd, float64 ----

LAGS = (1, 2, 4, T)


def _float64_net(cell, layers, bidirectional, seed):
    """A float64 net whose weights are multiples of 2^-10: exact in float32, so gradflow's float32 reading (and its
    float32 sum bias_ih + bias_hh) loses nothing against PyTorch's float64."""
    torch.manual_seed(seed)
    net = Net(cell, layers, bidirectional).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.round(p * 1024) / 1024)
    return net


def _one_layer(rnn, level, reverse=False):
    """A single-layer, forward PyTorch module holding the weights of one layer of ``rnn``."""
    suffix = f"_l{level}" + ("_reverse" if reverse else "")
    state = rnn.state_dict()
    one = type(rnn)(state[f"weight_ih{suffix}"].shape[1], H, dtype=torch.float64)
    one.load_state_dict({f"{name}_l0": state[f"{name}{suffix}"] for name in NAMES})
    return one


def _torch_lag_profile(rnn, inputs, lags):
    """``log10 ||dh_T / dh_{T-k}||_F`` (an LSTM's ``c_{T-k}`` held fixed) by torch.autograd.functional.jacobian,
    stepping a single-layer module one input at a time from the zero state."""
    lstm = isinstance(rnn, nn.LSTM)
    zero = torch.zeros(1, 1, H, dtype=torch.float64)

    def step(state, x):
        return rnn(x.view(1, 1, -1), state)[1]

    states = [(zero, zero) if lstm else zero]
    for x in inputs:
        states.append(step(states[-1], x))

    def profile(k):
        start = states[len(inputs) - k]

        def h_T(h):
            state = (h.view(1, 1, H), start[1]) if lstm else h.view(1, 1, H)
            for x in inputs[len(inputs) - k:]:
                state = step(state, x)
            return (state[0] if lstm else state).reshape(H)

        jac = torch.autograd.functional.jacobian(h_T, (start[0] if lstm else start).reshape(H))
        return torch.log10(torch.linalg.norm(jac)).item()

    return np.array([profile(k) for k in lags])


def _torch_input_sensitivity(rnn, xs):
    """``log10 ||dh^top_T / dx_{T-k}||_F`` for k = 0..T-1 from the Jacobian of the top level's ``h_n``."""
    def h_n(x):
        state = rnn(x.view(len(xs), 1, D))[1]
        return (state[0] if isinstance(state, tuple) else state)[-1].reshape(H)

    jac = torch.autograd.functional.jacobian(h_n, xs)  # (H, T, D)
    return np.array([torch.log10(torch.linalg.norm(jac[:, len(xs) - 1 - k])).item() for k in range(len(xs))])


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_stacked_lag_profiles_and_input_sensitivity_equal_pytorch_autograd(cell):
    net = _float64_net(cell, 2, False, seed=11)
    model = model_from_torch_module(net)
    torch.manual_seed(12)
    xs = torch.randn(T, D, dtype=torch.float64)
    profile = model_profiles(model, jnp.asarray(xs.numpy()))
    with torch.no_grad():
        below = _one_layer(net.lstm, 0)(xs.view(T, 1, D))[0].view(T, H)
    for level, inputs in ((0, xs), (1, below)):
        want = _torch_lag_profile(_one_layer(net.lstm, level), inputs, LAGS)
        got = profile.layers[level].log10_norm_h[np.array(LAGS) - 1]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    assert profile.input_sensitivity.shape == (T,)
    np.testing.assert_allclose(profile.input_sensitivity, _torch_input_sensitivity(net.lstm, xs), rtol=0, atol=1e-10)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_backward_layers_profile_is_pytorchs_reverse_direction_on_the_reversed_sequence(cell):
    net = _float64_net(cell, 1, True, seed=13)
    model = model_from_torch_module(net)
    torch.manual_seed(14)
    xs = torch.randn(T, D, dtype=torch.float64)
    profile = model_profiles(model, jnp.asarray(xs.numpy()))
    assert [(p.index, p.direction) for p in profile.layers] == [(0, "forward"), (0, "backward")]
    assert profile.input_sensitivity is None
    forward = _torch_lag_profile(_one_layer(net.lstm, 0), xs, LAGS)
    backward = _torch_lag_profile(_one_layer(net.lstm, 0, reverse=True), xs.flip(0), LAGS)
    np.testing.assert_allclose(profile.layers[0].log10_norm_h[np.array(LAGS) - 1], forward, rtol=0, atol=1e-10)
    np.testing.assert_allclose(profile.layers[1].log10_norm_h[np.array(LAGS) - 1], backward, rtol=0, atol=1e-10)
    assert np.abs(forward - backward).max() > 1e-3  # the directions differ: the test tells them apart


# ---- what people save ----

def _optimizer_state(net):
    """What ``torch.optim.Adam(...).state_dict()`` holds after a step (torch.optim's first use costs seconds)."""
    params = list(net.parameters())
    return {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                      for i, p in enumerate(params)},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "params": list(range(len(params)))}]}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda net: {"epoch": 3, "model_state_dict": net.state_dict(), "optimizer_state_dict": _optimizer_state(net),
                     "loss": torch.tensor(0.25)},
        lambda net: {"state_dict": {"model." + key: v for key, v in net.state_dict().items()}, "epoch": 1,
                     "global_step": 10, "pytorch-lightning_version": "2.4.0", "hyper_parameters": {"lr": 1e-3}},
        lambda net: {"model": net.state_dict()},
        lambda net: {"net": net.state_dict(), "config": {"hidden": H}},
        lambda net: nn.DataParallel(net).state_dict(),
        lambda net: {"module." + key: v for key, v in net.state_dict().items()},
    ],
    ids=["model_state_dict", "lightning", "model", "net", "DataParallel", "module_prefix"],
)
def test_checkpoint_dicts_and_prefixes_give_the_module(tmp_path, wrap):
    torch.manual_seed(3)
    net = Net("GRU", 2, k=1)
    torch.save(wrap(net), tmp_path / "checkpoint.pt")
    reference = model_from_torch_module(net)
    model = load_torch_model(tmp_path / "checkpoint.pt", head_output="sigmoid")
    assert model.head.output == "sigmoid" and reference.head.output == "linear"
    _assert_same_model(model.replace(head=model.head.replace(output="linear")), reference)


class EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(D, H)
        self.decoder = nn.GRU(H, H)
        self.fc = nn.Linear(H, 1)


def test_several_recurrent_modules_are_named_and_rnn_picks_one(tmp_path):
    torch.manual_seed(4)
    net = EncoderDecoder()
    torch.save(net.state_dict(), tmp_path / "seq2seq.pt")
    with pytest.raises(ValueError, match=r"seq2seq.pt: 2 recurrent modules \['decoder', 'encoder'\]; pick one with "
                                         r"rnn=PREFIX \(CLI option --rnn\)"):
        load_torch_model(tmp_path / "seq2seq.pt")
    decoder = load_torch_model(tmp_path / "seq2seq.pt", rnn="decoder")
    encoder = model_from_torch_module(net, rnn="encoder.")
    assert (decoder.layers[0].cell, decoder.input_size, encoder.layers[0].cell, encoder.input_size) == ("gru", H, "lstm", D)
    np.testing.assert_array_equal(decoder.layers[0].params.b_recurrent, net.decoder.bias_hh_l0.detach().numpy())
    np.testing.assert_array_equal(encoder.head.kernel, net.fc.weight.detach().numpy().T)
    with pytest.raises(ValueError, match=r"rnn='decoder.rnn' names no recurrent module; the recurrent modules are "
                                         r"\['decoder', 'encoder'\]"):
        model_from_torch_module(net, rnn="decoder.rnn")


class TwoHeads(nn.Module):
    """An input projection (not the head: it reads 5 features, not H), an LSTM, a LayerNorm, two Linear heads."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 5)
        self.project = nn.Linear(5, D)
        self.lstm = nn.LSTM(D, H)
        self.norm = nn.LayerNorm(H)
        self.fc1 = nn.Linear(H, 2)
        self.fc2 = nn.Linear(H, 3, bias=False)


def test_the_head_is_the_linear_layer_reading_the_top_level_and_head_picks_among_several():
    torch.manual_seed(5)
    state = TwoHeads().state_dict()
    with pytest.raises(ValueError, match=r"2 Linear layers read the top level's 4 features: 'fc1' \(2, 4\), 'fc2' "
                                         r"\(3, 4\); name the head with head=PREFIX \(CLI option --head-layer\)"):
        model_from_state_dict(state)
    model = model_from_state_dict(state, head="fc2")
    np.testing.assert_array_equal(model.head.kernel, state["fc2.weight"].numpy().T)
    np.testing.assert_array_equal(model.head.bias, np.zeros(3, np.float32))
    assert model_from_state_dict(state, head="fc1.").output_size == 2
    without_heads = {key: v for key, v in state.items() if not key.startswith("fc")}
    assert model_from_state_dict(without_heads).head is None  # the input projection is not a head
    with pytest.raises(ValueError, match=r"head='project': its weight project.weight \(3, 5\) reads 5 features, not "
                                         r"the top level's 4; Linear layers that read the top level: 'fc1'"):
        model_from_state_dict(state, head="project")
    with pytest.raises(ValueError, match=r"head='out': no Linear layer has that name"):
        model_from_state_dict(state, head="out")


def test_a_bidirectional_top_reads_heads_of_width_2h():
    torch.manual_seed(6)
    net = Net("LSTM", 1, True)
    state = {**net.state_dict(), "side.weight": torch.zeros(1, H)}  # reads H features: not the head of a 2H top
    model = model_from_state_dict(state)
    np.testing.assert_array_equal(model.head.kernel, net.fc.weight.detach().numpy().T)


# ---- refused, by name ----

def test_projections_elman_rnns_and_whole_pickled_modules_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"lstm.weight_hr_l0 is an LSTM projection: proj_size is not supported"):
        model_from_torch_module(Net("LSTM", proj_size=2))
    with pytest.raises(ValueError, match=r"lstm.weight_hh_l0 has shape \(4, 4\) = \(H, H\): an nn.RNN \(Elman\)"):
        model_from_torch_module(Net("RNN"))
    torch.save(nn.LSTM(D, H), tmp_path / "whole.pt")
    with pytest.raises(ValueError, match=r"whole.pt: holds the object torch.nn.modules.rnn.LSTM, .* never runs code "
                                         r"from a file. A whole pickled model \(torch.save\(model\)\) is not read: save "
                                         r"its weights with torch.save\(model.state_dict\(\), 'whole.pt'\)"):
        read_torch_file(tmp_path / "whole.pt")


def test_unreadable_files_and_files_without_a_state_dict(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_torch_file(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match=r"junk.pt: not a readable PyTorch file \(torch.load\(weights_only=True\) "
                                         r"failed: Unsupported operand"):
        read_torch_file(tmp_path / "junk.pt")
    (tmp_path / "zeros.pt").write_bytes(bytes(100))
    with pytest.raises(ValueError, match=r"zeros.pt: not a readable PyTorch file"):
        read_torch_file(tmp_path / "zeros.pt")
    torch.save({"epoch": 3, "state_dict": {"step": 4}}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match=r"empty.pt: holds no state dict .* but a dict with keys \['step'\]"):
        read_torch_file(tmp_path / "empty.pt")
    torch.save({"fc.weight": torch.zeros(1, H)}, tmp_path / "dense.pt")
    with pytest.raises(ValueError, match=r"dense.pt: no PyTorch nn.LSTM or nn.GRU found: .* found \['fc.weight'\]"):
        load_torch_model(tmp_path / "dense.pt")


def test_without_torch_the_error_names_the_extra(tmp_path, monkeypatch):
    torch.save(Net().state_dict(), tmp_path / "model.pt")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(TorchNotInstalledError, match=r'needs torch, which is not installed: pip install "gradflow\[torch\]"') as err:
        read_torch_file(tmp_path / "model.pt")
    assert isinstance(err.value, ImportError) and isinstance(err.value, ValueError)


def _edit(key, value):
    return lambda state: state.update({key: value})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("lstm.bias_hh_l1"), r"missing key 'lstm.bias_hh_l1', expected \(4H,\)"),
        (lambda s: s.pop("lstm.weight_hh_l0"), r"missing key 'lstm.weight_hh_l0', expected \(4H, H\) for an LSTM"),
        (_edit("lstm.weight_ih_l0", torch.zeros(4 * H + 1, D)), r"lstm.weight_ih_l0 must have shape \(4H, D\) = \(16, 3\); got \(17, 3\)"),
        (_edit("lstm.weight_hh_l0", torch.zeros(4 * H, H + 1)), r"lstm.weight_hh_l0 must have shape \(4H, H\) for an LSTM or \(3H, H\) for a GRU; got \(16, 5\)"),
        (_edit("lstm.weight_hh_l1", torch.zeros(4 * H, H - 1)), r"lstm.weight_hh_l1 must have shape \(4H, H\) = \(12, 3\); got \(16, 3\)"),
        (_edit("lstm.weight_ih_l1", torch.zeros(4 * H, D)), r"lstm.weight_ih_l1 must have shape \(4H, 4\) to take the 4 features of level l0; got \(16, 3\)"),
        (_edit("lstm.bias_ih_l0", torch.full((4 * H,), float("nan"))), r"lstm.bias_ih_l0 holds 16 non-finite values"),
        (_edit("fc.weight", torch.full((2, H), float("inf"))), r"fc.weight holds 8 non-finite values"),
        (_edit("fc.bias", torch.zeros(3)), r"fc.bias must have shape \(k,\) = \(2,\); got \(3,\)"),
        (_edit("lstm.weight_ih_l0", torch.zeros(4 * H, D, dtype=torch.complex64)), r"lstm.weight_ih_l0 must be real numbers \(4H, D\); got dtype complex64"),
        (_edit("lstm.bias_hh_l0", {"not": "an array"}), r"lstm.bias_hh_l0 must be real numbers \(4H,\); got dtype object"),
        (_edit("lstm.scale", torch.ones(1)), r"unknown key\(s\) \['lstm.scale'\] in the recurrent module 'lstm'"),
        (_edit("lstm.weight_ih_l3", torch.zeros(4 * H, H)), r"unknown key\(s\) \['lstm.weight_ih_l3'\] in the recurrent module"),
        (_edit("lstm.weight_ih_l1_reverse", torch.zeros(4 * H, H)), r"missing key 'lstm.weight_hh_l1_reverse', expected \(4H, H\)"),
    ],
)
def test_malformed_state_dicts_name_the_full_key(edit, message):
    torch.manual_seed(8)
    state = dict(Net("LSTM", 2).state_dict())
    edit(state)
    with pytest.raises(ValueError, match=message):
        model_from_state_dict(state, where="model.pt")


def test_other_modules_entries_are_not_read_and_head_output_is_checked():
    torch.manual_seed(10)
    net = Net()
    state = {**net.state_dict(), "block._extra_state": [[1], [1, 2]], "norm.weight": torch.ones(H)}
    _assert_same_model(model_from_state_dict(state), model_from_torch_module(net))
    with pytest.raises(ValueError, match=r"head_output='tanh' is not known; expected one of \['sigmoid', 'softmax', "
                                         r"'linear'\]"):
        model_from_state_dict(state, head_output="tanh")


def test_a_malformed_file_is_named_with_its_key(tmp_path):
    state = Net().state_dict()
    state["lstm.bias_ih_l0"][3] = float("nan")
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt: lstm.bias_ih_l0 holds 1 non-finite values"):
        load_torch_model(tmp_path / "model.pt")


def test_bfloat16_weights_are_read_at_their_values():
    torch.manual_seed(9)
    net = Net("GRU").to(torch.bfloat16)
    model = model_from_torch_module(net)
    np.testing.assert_array_equal(model.layers[0].params.U, net.lstm.weight_hh_l0.float().detach().numpy().T)
    assert model.layers[0].params.U.dtype == np.float32


def test_a_multi_layer_head_and_an_embedding_are_not_read_as_the_head():
    """fc1 (H -> 8) feeding fc2 (8 -> 1) is refused (its outputs are not predictions); an embedding of width H
    is not a head candidate."""
    rng = np.random.default_rng(11)
    H, D = 4, 3
    rnn = {"lstm.weight_ih_l0": rng.normal(size=(4 * H, D)), "lstm.weight_hh_l0": rng.normal(size=(4 * H, H)),
           "lstm.bias_ih_l0": rng.normal(size=4 * H), "lstm.bias_hh_l0": rng.normal(size=4 * H)}
    two = {**rnn, "fc1.weight": rng.normal(size=(8, H)), "fc1.bias": np.zeros(8), "fc2.weight": rng.normal(size=(1, 8)),
           "fc2.bias": np.zeros(1)}
    with pytest.raises(ValueError, match="seems to feed 'fc2'.*not a multi-layer head"):
        model_from_state_dict(two)
    assert model_from_state_dict(two, head="fc1").head.kernel.shape == (H, 8)  # named: the user's call
    embedded = {**rnn, "embedding.weight": rng.normal(size=(50, H)), "fc.weight": rng.normal(size=(1, H))}
    assert model_from_state_dict(embedded).head.kernel.shape == (H, 1)
    assert model_from_state_dict({**rnn, "embedding.weight": rng.normal(size=(50, H))}).head is None
