"""Collect a real latency dataset for validating core.predict (run on the device)."""
import csv, math, os, sys, time
import torch, torchvision
from torch.utils.flop_counter import FlopCounterMode

OUT = os.environ.get("OUT", "/tmp")
QUICK = "--quick" in sys.argv
DEADLINE = time.monotonic() + (60 if QUICK else 400)
MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg13", "vgg16",
    "vgg19", "alexnet", "squeezenet1_0", "squeezenet1_1", "densenet121", "densenet169", "densenet201",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0", "mnasnet0_5", "mnasnet1_0", "efficientnet_b0", "efficientnet_b1",
    "efficientnet_b2", "regnet_x_400mf", "regnet_y_400mf", "regnet_x_1_6gf", "googlenet",
    "resnext50_32x4d", "wide_resnet50_2", "convnext_tiny", "inception_v3"]
if QUICK:
    MODELS = ["squeezenet1_1", "mobilenet_v3_small", "shufflenet_v2_x0_5"]
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)
CPU_BATCHES = (1, 2, 4, 8)
CATS = [("conv", (torch.nn.modules.conv._ConvNd,)), ("linear", (torch.nn.Linear,)),
    ("batchnorm", (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)),
    ("pool", (torch.nn.modules.pooling._MaxPoolNd, torch.nn.modules.pooling._AvgPoolNd,
              torch.nn.modules.pooling._AdaptiveAvgPoolNd, torch.nn.modules.pooling._AdaptiveMaxPoolNd)),
    ("activation", (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Hardswish, torch.nn.Hardsigmoid,
                    torch.nn.SiLU, torch.nn.GELU, torch.nn.Sigmoid)),
    ("dropout", (torch.nn.modules.dropout._DropoutNd,))]

def features(model, size):
    leaves = [m for m in model.modules() if not list(m.children())]
    counts = {c: 0 for c, _ in CATS} | {"other": 0}
    for m in leaves:
        for c, types in CATS:
            if isinstance(m, types):
                counts[c] += 1; break
        else:
            counts["other"] += 1
    traffic = [0]
    def hook(mod, inp, out):
        b = sum(t.numel() * t.element_size() for t in inp if torch.is_tensor(t))
        if torch.is_tensor(out): b += out.numel() * out.element_size()
        b += sum(p.numel() * p.element_size() for p in mod.parameters(recurse=False))
        traffic[0] += b
    hs = [m.register_forward_hook(hook) for m in leaves]
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    for h in hs: h.remove()
    return {"params": sum(p.numel() for p in model.parameters()), "flops": fc.get_total_flops(),
            "depth": counts["conv"] + counts["linear"], "memory_traffic_mb": traffic[0] / 1e6,
            "input_pixels": size * size, **{f"layers_{k}": v for k, v in counts.items()}}

def time_gpu(model, x, iters):
    for _ in range(3): model(x)
    torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); model(x); e.record(); e.synchronize(); out.append(s.elapsed_time(e))
    return sorted(out)[len(out) // 2]

def time_cpu(model, x, iters):
    model(x)
    out = []
    for _ in range(iters):
        t = time.perf_counter_ns(); model(x); out.append((time.perf_counter_ns() - t) / 1e6)
    return sorted(out)[len(out) // 2]

feat_rows, rows = [], []
torch.set_num_threads(2 if QUICK else 16)
cuda = torch.cuda.is_available()
t0 = time.monotonic()
for name in MODELS:
    if time.monotonic() > DEADLINE: print("deadline at", name); break
    try:
        size = 299 if name == "inception_v3" else 224
        kw = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
        model = torchvision.models.get_model(name, weights=None, **kw).eval()
        f = features(model, size); feat_rows.append({"model": name, **f})
        with torch.inference_mode():
            plats = []
            if cuda: plats += [("cuda", "fp32"), ("cuda", "fp16")]
            plats += [("cpu", "fp32")]
            for dev, prec in plats:
                m = model.to(dev).to(torch.float16 if prec == "fp16" else torch.float32)
                for b in (GPU_BATCHES if dev == "cuda" else CPU_BATCHES):
                    if dev == "cpu" and (QUICK and b > 2): continue
                    x = torch.randn(b, 3, size, size, device=dev, dtype=next(m.parameters()).dtype)
                    mem = None
                    if dev == "cuda":
                        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
                        lat = time_gpu(m, x, 15)
                        mem = torch.cuda.max_memory_allocated() / 2**20
                    else:
                        lat = time_cpu(m, x, 3 if QUICK else 5)
                    rows.append({"model": name, "backend": "torch", "device": dev, "precision": prec,
                        "batch_size": b, "mode": "latency", "latency_ms_median": lat,
                        "per_image_ms": lat / b, "peak_device_mem_mb": mem, "params": f["params"],
                        "flops": f["flops"], "status": "ok"})
                m.to("cpu").float()
        print(f"{time.monotonic()-t0:6.1f}s {name} flops={f['flops']/1e9:.2f}G", flush=True)
    except Exception as exc:  # keep going; report
        print("FAILED", name, repr(exc), flush=True)
    for path, data in (("real.csv", rows), ("features.csv", feat_rows)):
        if data:
            keys = sorted({k for r in data for k in r}, key=lambda k: list(data[0]).index(k) if k in data[0] else 99)
            with open(os.path.join(OUT, path), "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys); w.writeheader(); w.writerows(data)
print("done", len(rows), "rows", f"{time.monotonic()-t0:.1f}s")
