#!/usr/bin/env python3
"""PyTorch reference of isomax's models, layer for layer, and the parity fixtures.

Run by hand (never in CI); needs `pip install torch safetensors numpy`:

    python3 scripts/torch_reference.py fixtures [--out tests/fixtures/parity] [--lr 0.01]
    python3 scripts/torch_reference.py bench --model resnet-tiny --head isomax --batch 64 \
        --threads 2 --reps 3 [--device cpu|cuda] [--infer-batch 256]
    python3 scripts/torch_reference.py step --model densenet100 --batch 64 --device cuda

The models mirror src/nn/*.rs exactly, and their state_dict names are isomax's tensor names
(`backbone.block0.conv1.weight`, `head.prototypes`, ...), so `isomax import --pytorch` and
`isomax export --pytorch` read and write these files unchanged (BatchNorm's
`num_batches_tracked` is written on export and ignored on import).

Initial weights come from a counter-based hash (`hash_uniform`), not from either engine's
random generator, so that tests/parity.rs can rebuild the big models' starting point without
storing 85 MB of ResNet-34 weights. The distributions have isomax's variances: He (fan-out)
for convolutions, U(±1/√in) for the SoftMax head, zero IsoMax prototypes, unit-variance
IsoMax+/DisMax prototypes, BN weight 1 and bias 0, distance scale 1.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # the bench script checks for this and skips PyTorch
    print("torch_reference.py: PyTorch is not installed (pip install torch)", file=sys.stderr)
    sys.exit(3)

HEADS = ["softmax", "isomax", "isomaxplus", "dismax"]
MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------------------------
# Deterministic values shared with tests/parity.rs (exact in both languages).


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & MASK64
    return h


def hash_uniform(key, n):
    """n values in [-1, 1) (multiples of 2^-23) from the name `key`: SplitMix64 of
    fnv1a64(key) + (i + 1)·φ, top 24 bits."""
    seed = np.uint64(fnv1a64(key))
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = seed + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    k = (z >> np.uint64(40)).astype(np.int64)  # 24 bits
    return ((2 * k - (1 << 24)).astype(np.float64) / float(1 << 24)).astype(np.float32)


def init_value(name, shape, head):
    """The initial value of one tensor, by its isomax name (see the module docstring)."""
    n = int(np.prod(shape)) if len(shape) else 1
    leaf = name.rsplit(".", 1)[-1]
    f32 = np.float32
    if "head." in name:
        if name.endswith("distance_scale"):
            return np.ones(shape, f32)
        if name.endswith("prototypes"):
            if head == "isomax":
                return np.zeros(shape, f32)
            return (hash_uniform(name, n) * f32(math.sqrt(3.0))).reshape(shape)
        # SoftMax linear: U(±1/√in), weight and bias.
        fan_in = shape[1] if len(shape) == 2 else None
        return None if fan_in is None else (hash_uniform(name, n) * f32(1.0 / math.sqrt(fan_in))).reshape(shape)
    if len(shape) == 4:  # convolution weight [out, in, k, k]
        fan_out = shape[0] * shape[2] * shape[3]
        bound = f32(math.sqrt(2.0 / fan_out) * math.sqrt(3.0))
        return (hash_uniform(name, n) * bound).reshape(shape)
    if leaf in ("weight", "running_var"):  # batch norm
        return np.ones(shape, f32)
    return np.zeros(shape, f32)  # batch-norm bias and running mean


def init_state(model, head):
    state = {}
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        shape = tuple(t.shape)
        v = init_value(name, shape, head)
        if v is None:  # the SoftMax bias: U(±1/√in) with in from the weight
            fan_in = model.state_dict()[name.replace("bias", "weight")].shape[1]
            v = hash_uniform(name, int(np.prod(shape))) * np.float32(1.0 / math.sqrt(fan_in))
        state[name] = torch.from_numpy(np.ascontiguousarray(v.reshape(shape)))
    model.load_state_dict(state, strict=False)
    return model


def sampled_indices(n):
    """The 16 gradient elements whose values the big-model fixture keeps."""
    return [k * n // 16 for k in range(16)]


# --------------------------------------------------------------------------------------------
# Models (src/nn/*.rs, layer for layer).


def conv(cin, cout, k, stride, pad):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)


class Shortcut(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = conv(cin, cout, 1, stride, 0)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = Shortcut(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + skip)


class ResNet(nn.Module):
    """src/nn/resnet.rs: 3×3 stem + BN + ReLU, basic blocks, global average pool."""

    def __init__(self, cin, stem, stages):
        super().__init__()
        self.conv1 = conv(cin, stem, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(stem)
        c, i = stem, 0
        for n, cout, stride in stages:
            for j in range(n):
                setattr(self, f"block{i}", BasicBlock(c, cout, stride if j == 0 else 1))
                c, i = cout, i + 1
        self.nblocks, self.features = i, c

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.nblocks):
            h = getattr(self, f"block{i}")(h)
        return h.mean(dim=(2, 3))


class Bottleneck(nn.Module):
    def __init__(self, c, growth):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c)
        self.conv1 = conv(c, 4 * growth, 1, 1, 0)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = conv(4 * growth, growth, 3, 1, 1)

    def forward(self, x):
        t = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(t)))


class Transition(nn.Module):
    def __init__(self, c, out):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.conv = conv(c, out, 1, 1, 0)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, 2)


class DenseBlock(nn.Module):
    def __init__(self, c, growth, layers):
        super().__init__()
        for i in range(layers):
            setattr(self, f"layer{i}", Bottleneck(c + i * growth, growth))
        self.layers = layers

    def forward(self, h):
        for i in range(self.layers):
            h = torch.cat([h, getattr(self, f"layer{i}")(h)], 1)
        return h


class DenseNet(nn.Module):
    """src/nn/densenet.rs: DenseNet-BC, three blocks, compression 0.5."""

    def __init__(self, cin, growth, layers):
        super().__init__()
        c = 2 * growth
        self.conv1 = conv(cin, c, 3, 1, 1)
        for b in range(3):
            setattr(self, f"block{b}", DenseBlock(c, growth, layers))
            c += layers * growth
            if b < 2:
                setattr(self, f"transition{b}", Transition(c, c // 2))
                c //= 2
        self.bn = nn.BatchNorm2d(c)
        self.features = c

    def forward(self, x):
        h = self.conv1(x)
        for b in range(3):
            h = getattr(self, f"block{b}")(h)
            if b < 2:
                h = getattr(self, f"transition{b}")(h)
        return F.relu(self.bn(h)).mean(dim=(2, 3))


class Linear(nn.Module):
    def __init__(self, d, c):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c, d))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, f):
        return F.linear(f, self.weight, self.bias)


def distances(f, p):
    """‖f_i − p_j‖ from the direct differences, as src/ood/scores.rs (no pairwise eps)."""
    return ((f.unsqueeze(1) - p.unsqueeze(0)) ** 2).sum(-1).sqrt()


class Head(nn.Module):
    """src/nn/head.rs: logits at temperature 1."""

    def __init__(self, kind, d, c):
        super().__init__()
        self.kind = kind
        if kind == "softmax":
            self.linear = Linear(d, c)
        else:
            self.prototypes = nn.Parameter(torch.zeros(c, d))
            if kind != "isomax":
                self.distance_scale = nn.Parameter(torch.ones(1))

    def forward(self, f):
        if self.kind == "softmax":
            return self.linear(f)
        if self.kind == "isomax":
            return -distances(f, self.prototypes)
        div = math.sqrt(2.0) if self.kind == "dismax" else 1.0
        d = self.distance_scale.abs() * distances(F.normalize(f), F.normalize(self.prototypes)) / div
        if self.kind == "dismax":
            return -(d + d.mean(dim=1, keepdim=True))
        return -d

    def train_scale(self):
        return 1.0 if self.kind == "softmax" else 10.0


ARCH = {
    "resnet-tiny": lambda cin: ResNet(cin, 16, [(1, 16, 1), (1, 32, 2), (1, 64, 2)]),
    "resnet34": lambda cin: ResNet(cin, 64, [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]),
    "densenet-tiny": lambda cin: DenseNet(cin, 8, 2),
    "densenet100": lambda cin: DenseNet(cin, 12, 16),
}


class Model(nn.Module):
    def __init__(self, arch, head, cin, classes):
        super().__init__()
        self.backbone = ARCH[arch](cin)
        self.head = Head(head, self.backbone.features, classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def build(arch, head, cin, classes):
    return init_state(Model(arch, head, cin, classes), head)


def loss_of(model, logits, labels):
    """Entropic cross-entropy: mean −log softmax(scale·z)_y (scale 1 for SoftMax)."""
    return F.cross_entropy(model.head.train_scale() * logits, labels)


def sgd(model, lr):
    """The paper's optimizer, as src/optim.rs: Nesterov, momentum 0.9, wd 1e-4 on all."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)


def scores(logits):
    """Every OOD score per row, as src/ood/scores.rs row_scores (f64 from f32 logits)."""
    z = logits.double()
    lse = torch.logsumexp(z, 1)
    logp = z - lse[:, None]
    p = logp.exp()
    es = torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(1)
    mx = z.max(1).values
    mean = z.mean(1)
    return {
        "mps": p.max(1).values.tolist(),
        "es": es.tolist(),
        "mds": mx.tolist(),
        "energy": lse.tolist(),
        "max_logit": mx.tolist(),
        "mmles": (mx + mean + es).tolist(),
    }


def plain_state(model):
    """state_dict without num_batches_tracked, as contiguous f32 numpy arrays."""
    return {
        k: v.detach().contiguous().float().numpy().copy()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


# --------------------------------------------------------------------------------------------
# Fixtures.


def read_idx(path, n):
    import gzip

    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(magic & 0xFF)]
    off = 4 + 4 * len(dims)
    arr = np.frombuffer(data, dtype=np.uint8, offset=off).reshape(dims)
    return arr[:n]


def mnist_14(root, split, n):
    """The first n MNIST images of `split` ('train'/'t10k'), 2×2-averaged to 14×14 and
    normalised with MNIST's mean 0.1307 and std 0.3081; labels as f32."""
    imgs = read_idx(os.path.join(root, f"{split}-images-idx3-ubyte.gz"), n).astype(np.float64) / 255.0
    labels = read_idx(os.path.join(root, f"{split}-labels-idx1-ubyte.gz"), n).astype(np.float32)
    small = imgs.reshape(n, 14, 2, 14, 2).mean(axis=(2, 4))
    x = ((small - 0.1307) / 0.3081).astype(np.float32)
    return x.reshape(n, 1, 14, 14), labels


TINY = {"steps": 20, "batch": 16, "classes": 10, "size": 14}
BIG = {"batch": 2, "classes": 10, "size": 32, "head": "isomaxplus"}


def big_inputs():
    """Two CIFAR-size inputs (unit variance) and labels 3 and 7, rebuilt by the test."""
    n = BIG["batch"] * 3 * BIG["size"] ** 2
    x = hash_uniform("parity.big.images", n) * np.float32(math.sqrt(3.0))
    return x.reshape(BIG["batch"], 3, BIG["size"], BIG["size"]), np.array([3.0, 7.0], np.float32)


def save(path, tensors, meta=None):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, path, metadata=meta)


def max_abs_dev(a, b):
    """max |a − b| / max |b| (the parity test's weight metric)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# PyTorch's own float32 runs with different summation orders; how far they fall from the
# float64 reference measures how well-conditioned each comparison is.
F32_VARIANTS = ["default", "channels_last", "no_onednn"]


def variant(name):
    """(dtype, memory format) of a run, and oneDNN switched per variant."""
    torch.backends.mkldnn.enabled = name != "no_onednn"
    if name == "f64":
        return torch.float64, torch.contiguous_format
    if name == "channels_last":
        return torch.float32, torch.channels_last
    return torch.float32, torch.contiguous_format


def train_tiny(arch, head, x, y, lr, run):
    """20 steps from the hash initialisation as `run` (f64 or an f32 variant):
    (losses, final state)."""
    dtype, fmt = variant(run)
    steps, batch = TINY["steps"], TINY["batch"]
    model = build(arch, head, 1, TINY["classes"]).to(dtype).to(memory_format=fmt)
    opt = sgd(model, lr)
    losses = []
    model.train()
    for s in range(steps):
        xb = torch.from_numpy(x[s * batch : (s + 1) * batch]).to(dtype).to(memory_format=fmt)
        yb = torch.from_numpy(y[s * batch : (s + 1) * batch]).long()
        opt.zero_grad()
        loss = loss_of(model, model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.backends.mkldnn.enabled = True
    return losses, plain_state(model)


def grad_checksums(model):
    """Per parameter: sum, sum of squares and 16 sampled elements of its gradient (f64)."""
    out = {}
    for name, p in model.named_parameters():
        g = p.grad.detach().double().flatten()
        idx = sampled_indices(g.numel())
        out[name] = {
            "shape": list(p.shape),
            "sum": g.sum().item(),
            "sum_sq": (g * g).sum().item(),
            "indices": idx,
            "values": g[idx].tolist(),
        }
    return out


def checksum_dev(got, want, n):
    """The parity test's gradient metric: samples over the tensor's scale, sum of squares
    relative, sum over √(n·Σg²); the largest of the three."""
    rms = math.sqrt(want["sum_sq"] / n)
    scale = max([rms] + [abs(v) for v in want["values"]] + [1e-30])
    samples = max(abs(a - b) / scale for a, b in zip(got["values"], want["values"]))
    sq = abs(got["sum_sq"] - want["sum_sq"]) / max(want["sum_sq"], 1e-30)
    sm = abs(got["sum"] - want["sum"]) / max(math.sqrt(n * want["sum_sq"]), 1e-30)
    return max(samples, sq, sm)


def fixtures(args):
    """The reference is PyTorch in float64. Beside it, for every loss, weight tensor and
    gradient, the largest deviation of PyTorch's own float32 runs (F32_VARIANTS) from it
    (`losses_f32_dev`, `f32_dev`): the test allows isomax a small multiple of that, so
    that rounding amplified by an ill-conditioned step is told apart from engine error."""
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "mnist")
    steps, batch = TINY["steps"], TINY["batch"]
    x, y = mnist_14(root, "train", steps * batch)
    # Deterministic noise, so that no two pixels are equal: on MNIST's constant background
    # a rounding difference flips a ReLU for thousands of pixels at once.
    x = x + hash_uniform("parity.noise", x.size).reshape(x.shape) * np.float32(0.5)
    ex, ey = mnist_14(root, "t10k", batch)
    save(
        os.path.join(args.out, "batches.safetensors"),
        {
            "images": x.reshape(steps, batch, 1, 14, 14),
            "labels": y.reshape(steps, batch),
            "eval_images": ex,
            "eval_labels": ey,
        },
    )
    meta = {
        "torch": torch.__version__,
        "lr": args.lr,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1e-4,
        "steps": steps,
        "batch": batch,
    }
    for arch in ["resnet-tiny", "densenet-tiny"]:
        for head in HEADS:
            init = plain_state(build(arch, head, 1, TINY["classes"]))
            losses, final = train_tiny(arch, head, x, y, args.lr, "f64")
            runs32 = [train_tiny(arch, head, x, y, args.lr, v) for v in F32_VARIANTS]
            losses_dev = [max(abs(r[0][s] - losses[s]) / abs(losses[s]) for r in runs32) for s in range(steps)]
            f32_dev = {k: max(max_abs_dev(r[1][k], final[k]) for r in runs32) for k in final}
            # Eval mode in float32 from the reference's final state.
            model = build(arch, head, 1, TINY["classes"])
            model.load_state_dict({k: torch.from_numpy(v) for k, v in final.items()}, strict=False)
            model.eval()
            with torch.no_grad():
                logits = model(torch.from_numpy(ex))
            tensors = {f"init.{k}": v for k, v in init.items()}
            tensors.update({f"final.{k}": v for k, v in final.items()})
            tensors["eval.logits"] = logits.numpy()
            name = f"{arch}-{head}"
            save(os.path.join(args.out, f"{name}.safetensors"), tensors)
            with open(os.path.join(args.out, f"{name}.json"), "w") as f:
                json.dump(
                    {"model": arch, "head": head, **meta, "losses": losses, "losses_f32_dev": losses_dev,
                     "f32_dev": f32_dev, "scores": scores(logits)},
                    f,
                    indent=1,
                )
            print(f"{name}: loss {losses[0]:.5f} -> {losses[-1]:.5f}; PyTorch f32 vs f64: loss {max(losses_dev):.1e}, "
                  f"weights {max(f32_dev.values()):.1e}", flush=True)
    for arch in ["densenet100", "resnet34"]:
        bx, by = big_inputs()
        runs = {}
        for run in ["f64"] + F32_VARIANTS:
            dtype, fmt = variant(run)
            model = build(arch, BIG["head"], 3, BIG["classes"]).to(dtype).to(memory_format=fmt)
            model.train()
            xb = torch.from_numpy(bx).to(dtype).to(memory_format=fmt)
            loss = loss_of(model, model(xb), torch.from_numpy(by).long())
            loss.backward()
            runs[run] = (loss.item(), grad_checksums(model))
        torch.backends.mkldnn.enabled = True
        loss, grads = runs["f64"]
        loss_dev = max(abs(runs[v][0] - loss) / loss for v in F32_VARIANTS)
        for name, g in grads.items():
            n = int(np.prod(g["shape"]))
            g["f32_dev"] = max(checksum_dev(runs[v][1][name], g, n) for v in F32_VARIANTS)
        with open(os.path.join(args.out, f"{arch}-step.json"), "w") as f:
            json.dump(
                {"model": arch, "head": BIG["head"], "torch": torch.__version__, "batch": BIG["batch"],
                 "loss": loss, "loss_f32_dev": loss_dev, "gradients": grads},
                f,
            )
        worst = max(g["f32_dev"] for g in grads.values())
        print(f"{arch}: loss {loss:.6f}, {len(grads)} parameter tensors; PyTorch f32 vs f64: "
              f"loss {loss_dev:.1e}, gradients {worst:.1e}", flush=True)


# --------------------------------------------------------------------------------------------
# Timing (scripts/bench_vs_pytorch.sh, scripts/gpu_check.sh).


def timed_steps(args):
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    cin, size = (1, 28) if args.model.endswith("tiny") else (3, 32)
    if args.size:
        size = args.size
    model = build(args.model, args.head, cin, 10).to(dev)
    opt = sgd(model, 0.01)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, cin, size, size, generator=g).to(dev)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(dev)
    xi = torch.randn(args.infer_batch, cin, size, size, generator=g).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        opt.zero_grad()
        loss = loss_of(model, model(x), y)
        loss.backward()
        opt.step()
        return loss

    model.train()
    train_step().item()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    sync()
    train_s = (time.perf_counter() - t0) / args.steps
    out = {"model": args.model, "head": args.head, "device": str(dev), "threads": args.threads,
           "batch": args.batch, "train_step_s": train_s, "train_img_s": args.batch / train_s}
    if args.infer_batch > 0:
        model.eval()
        with torch.no_grad():
            model(xi)
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                model(xi)
            sync()
        infer_s = (time.perf_counter() - t0) / args.steps
        out.update({"infer_batch": args.infer_batch, "infer_s": infer_s, "infer_img_s": args.infer_batch / infer_s})
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fx = sub.add_parser("fixtures", help="write the parity fixtures")
    fx.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "parity"))
    fx.add_argument("--lr", type=float, default=0.01)
    fx.add_argument("--threads", type=int, default=2)
    for name in ("bench", "step"):
        b = sub.add_parser(name, help="time training steps (and inference) of one model")
        b.add_argument("--model", default="resnet-tiny", choices=sorted(ARCH))
        b.add_argument("--head", default="isomax", choices=HEADS)
        b.add_argument("--batch", type=int, default=64)
        b.add_argument("--infer-batch", type=int, default=256 if name == "bench" else 0)
        b.add_argument("--steps", type=int, default=3)
        b.add_argument("--size", type=int, default=0, help="image side (default 28 tiny, 32 big)")
        b.add_argument("--threads", type=int, default=2)
        b.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.cmd == "fixtures":
        fixtures(args)
    else:
        timed_steps(args)


if __name__ == "__main__":
    main()
