#!/usr/bin/python3
"""PyTorch's own CPU time for AffectGPT's two encoders at their real shapes, the reference of
bench/bench_encoders.c (which runs this script and parses its last line). Built in plain torch.nn with
random weights (Debian's python3-torch has no transformers), layer for layer as HF transformers runs
them in float32 eval mode:

  CLIP ViT-L/14 vision tower: Conv2d 3->1024 k14 s14 (no bias), class token, 257 position embeddings,
  pre LayerNorm, 24 pre-LN blocks (16-head self-attention with q/k/v/out biases, MLP 1024->4096->1024
  with quick-GELU), post LayerNorm of the class token, projection 1024->768: one 224x224 image.

  chinese-hubert-large: 7 Conv1d layers (512 channels, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2,
  with bias) each followed by LayerNorm over channels and GELU; LayerNorm + Linear 512->1024; positional
  Conv1d 1024->1024 k128 groups 16 pad 64 (last frame dropped) + GELU; 24 stable-layer-norm blocks
  (16 heads, MLP 1024->4096->1024, GELU); final LayerNorm, the mean of the last 4 hidden states and over
  time: N_CLIPS clips of 2 s (32000 samples) as one batch, as AffectGPT runs its 8.

Usage: ref_encoders.py THREADS REPEATS N_CLIPS. Prints one line
  "REF clip_wall_ms=.. clip_cpu_ms=.. hubert_wall_ms=.. hubert_cpu_ms=.." per image / per clip: the
best of REPEATS runs after one warm-up run, wall time and this process' CPU time (all threads).
The modules are also imported by scripts/make_features_fixtures.py, which checks them against HF
transformers' outputs on the tiny fixtures before using them as a reference."""
import sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F



class Block(nn.Module):
    def __init__(self, d, h, ff, act):
        super().__init__()
        self.h, self.act = h, act
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):  # pre-LN: both CLIP and HuBERT's stable-layer-norm layers
        b, t, d = x.shape
        y = self.ln1(x)
        q = self.q(y).view(b, t, self.h, -1).transpose(1, 2) * (d // self.h) ** -0.5
        k = self.k(y).view(b, t, self.h, -1).transpose(1, 2)
        v = self.v(y).view(b, t, self.h, -1).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v  # eager attention, as attn_implementation="eager"
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class ClipVision(nn.Module):
    def __init__(self, d=1024, layers=24, heads=16, ff=4096, patch=14, image=224, proj=768):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch, bias=False)
        self.cls = nn.Parameter(torch.randn(d) * 0.02)
        self.pos = nn.Parameter(torch.randn((image // patch) ** 2 + 1, d) * 0.02)
        self.pre, self.post = nn.LayerNorm(d), nn.LayerNorm(d)
        self.blocks = nn.ModuleList(Block(d, heads, ff, quick_gelu) for _ in range(layers))
        self.proj = nn.Linear(d, proj, bias=False)

    def hidden(self, px):
        x = self.patch(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], 1) + self.pos
        x = self.pre(x)
        hs = [x]
        for b in self.blocks:
            x = b(x)
            hs.append(x)
        return hs, self.proj(self.post(x[:, 0]))

    def forward(self, px):
        return self.hidden(px)[1]


class ConvLN(nn.Module):
    def __init__(self, cin, cout, k, s):
        super().__init__()
        self.conv, self.ln = nn.Conv1d(cin, cout, k, s, bias=True), nn.LayerNorm(cout)

    def forward(self, x):
        return F.gelu(self.ln(self.conv(x).transpose(1, 2)).transpose(1, 2))


class Hubert(nn.Module):
    def __init__(self, d=1024, layers=24, heads=16, ff=4096, c=512, posk=128, posg=16):
        super().__init__()
        ks, ss = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
        self.posk = posk
        self.convs = nn.ModuleList(ConvLN(1 if i == 0 else c, c, ks[i], ss[i]) for i in range(7))
        self.fp_ln, self.fp = nn.LayerNorm(c), nn.Linear(c, d)
        self.pos = nn.Conv1d(d, d, posk, padding=posk // 2, groups=posg)
        self.blocks = nn.ModuleList(Block(d, heads, ff, F.gelu) for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    def hidden(self, wav):
        """extract_features, the hidden states (transformers 5: the last block's raw output last) and
        last_hidden_state (its final layer norm)."""
        x = wav[:, None]
        for c in self.convs:
            x = c(x)
        feat = x.transpose(1, 2)
        h = self.fp(self.fp_ln(feat))
        p = self.pos(h.transpose(1, 2))
        if self.posk % 2 == 0:
            p = p[:, :, :-1]
        h = h + F.gelu(p).transpose(1, 2)
        hs = [h]
        for b in self.blocks:
            h = b(h)
            hs.append(h)
        return feat, hs, self.ln(h)

    def forward(self, wav):  # the AffectGPT feature (transformers 4's list: the last entry layer-normed)
        _, hs, last = self.hidden(wav)
        return torch.stack(hs[-4:-1] + [last]).mean(0).mean(1)


if __name__ == "__main__":
    threads, repeats, n_clips = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def best_ms(f, n):
        f()
        wall, cpu = [], []
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return min(wall) * 1000, min(cpu) * 1000


    with torch.no_grad():
        clip = ClipVision().eval()
        px = torch.randn(1, 3, 224, 224)
        cw, cc = best_ms(lambda: clip(px), repeats)
        del clip
        hub = Hubert().eval()
        wav = torch.randn(n_clips, 32000)
        hw, hc = best_ms(lambda: hub(wav), repeats)
    print(f"REF clip_wall_ms={cw:.1f} clip_cpu_ms={cc:.1f} hubert_wall_ms={hw / n_clips:.1f} "
          f"hubert_cpu_ms={hc / n_clips:.1f} torch={torch.__version__} threads={threads}")
