r"""Layers trained by an unsupervised local rule: :class:`HebbConv2d`, :class:`HebbLinear`, and activations.

"Layers compute; rules learn": a layer computes its currents :math:`u = \langle w_i, x_n\rangle` and, when
``plastic`` (set by the learner during the unsupervised epoch), hands them to its rule
(:mod:`neuroplastic.hebbian.rules`), forms :math:`\Delta w_i = \sum_n p_{in} x_n - c_i w_i`, normalises it by
:math:`\max|\Delta w|`, multiplies by the rule's per-unit rate and writes :math:`-\Delta w` into
``weight.grad``; the learner's SGD optimizer then applies :math:`w \leftarrow w + \eta\,\Delta w`.

For a conv layer the correlation :math:`\sum_{n,\mathrm{pos}} p\,x_{\mathrm{patch}}` is exactly the weight
gradient of a convolution with output gradient ``p`` (:func:`conv_correlation`: one matrix product over
channels-last patches for wide ungrouped layers, ``torch.nn.grad.conv2d_weight`` for small or grouped ones;
both cost about one forward convolution) — never a Python loop over positions. Conv weights are kept channels-last,
so the currents come out channels-last and the GEMM writes the weight's memory order directly. The rule
sees the activity in rows layout ``[positions, C]`` (contiguous channels for its softmax/argmax; a view of
channels-last currents), and :math:`\Delta w` is formed in place in a buffer each layer keeps, so an update
allocates no weight-sized temporaries.
With ``plastic`` off the layers are ordinary differentiable modules (the backprop baseline uses them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .rules import HebbRule, dog_kernel, max_abs, unit_norms, unit_rows

__all__ = ["UPDATE_DTYPES", "HebbConv2d", "HebbLinear", "Triangle", "conv_correlation", "init_weight",
           "update_dtype"]

_INITS = ("softhebb", "kaiming", "normal")


def init_weight(w: torch.Tensor, init: str, generator: torch.Generator | None = None) -> None:
    r"""Initialise ``w`` in place.

    ``softhebb``: :math:`w \sim \mathcal N(0, 1)\cdot 25/\sqrt{\mathrm{fan\_in}}` (Journé et al. 2023, so
    :math:`\lVert w_i\rVert \approx 25` and the adaptive rate pulls it to 1); ``kaiming``: PyTorch's default
    Kaiming-uniform (Nimmo & Mondragón 2025); ``normal``: :math:`\mathcal N(0, 1/\mathrm{fan\_in})`.
    """
    fan_in = w[0].numel()
    with torch.no_grad():
        if init == "softhebb":
            w.normal_(0.0, 1.0, generator=generator).mul_(25.0 / math.sqrt(fan_in))
        elif init == "kaiming":
            nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
        elif init == "normal":
            w.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
        else:
            raise ValueError(f"unknown init {init!r}; allowed: {', '.join(_INITS)}")


#: precisions the update's correlation product :math:`\sum_n p_{in} x_n` may be computed in (``update_dtype``)
UPDATE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def update_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    r"""The dtype named ``name`` for the update's correlation product (``None``: the weight's own dtype).

    ``bfloat16``: the factors :math:`p` and the inputs :math:`x` are rounded to bfloat16 (8-bit mantissa) and the
    product is computed by the backend's bfloat16 GEMM (products accumulated in float32, the result rounded to
    bfloat16, relative error about :math:`2^{-8}` per element); the decay, the normalisation and the weights stay in
    float32. It halves the product's time only where the hardware has bfloat16 arithmetic (``AVX512-BF16`` or AMX
    CPUs, recent GPUs); elsewhere it is emulated and slower. The forward pass is unaffected."""
    if name is None:
        return None
    dt = UPDATE_DTYPES.get(name) if isinstance(name, str) else name
    if dt not in UPDATE_DTYPES.values():
        raise ValueError(f"unknown update_dtype {name!r}; allowed: {', '.join(UPDATE_DTYPES)}")
    return dt


def _product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None,
             res_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``a @ b`` computed in ``a``'s dtype: written into ``out`` (by the GEMM itself when the dtypes agree) or
    returned in ``res_dtype``."""
    if out is None:
        res = a @ b
        return res if res_dtype is None else res.to(res_dtype)
    return torch.mm(a, b, out=out) if out.dtype == a.dtype else out.copy_(a @ b)


#: patch length (in_channels/groups · k²) from which :func:`conv_correlation` uses the patch GEMM (below it:
#: ``torch.nn.grad.conv2d_weight``). On our CPU, 1 thread (``benchmarks/RESULTS.md``, section
#: ``cpu_kernel_leads_cl``): patch 864 GEMM 20.9 vs oneDNN 24.1 ms, patch 3456 74.5 vs 150.7 ms; the 5×5 first
#: layer (patch 75) oneDNN 2.8 vs 3.0 ms.
UNFOLD_MIN_PATCH = 256


def patch_rows(x: torch.Tensor, kh: int, kw: int, stride: int = 1) -> torch.Tensor:
    """The ``kh×kw`` patches of ``x [N, C, H, W]`` as rows ``[N·H'·W', kh·kw·C]``: positions in ``(n, h, w)`` order,
    features in ``(i, j, c)`` order — the memory order of a channels-last conv weight. Gathered by one strided
    copy from the NHWC view of ``x`` (runs of ``C`` contiguous values; the ``(c, i, j)`` order would gather
    runs of ``kw`` values and costs over 10× more on our CPU)."""
    xh = x.permute(0, 2, 3, 1)
    if not xh.is_contiguous():
        xh = xh.contiguous()
    return xh.unfold(1, kh, stride).unfold(2, kw, stride).permute(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * x.shape[1])


def _ijc(t: torch.Tensor) -> torch.Tensor | None:
    """The ``[C_out, kh·kw·C_in]`` view of a channels-last conv weight (or weight-shaped buffer), ``None`` if
    ``t`` is not laid out channels-last."""
    return unit_rows(t) if t.permute(0, 2, 3, 1).is_contiguous() else None


def _from_ijc(flat: torch.Tensor, weight_shape: tuple[int, ...]) -> torch.Tensor:
    """``[C_out, kh·kw·C_in]`` in ``(i, j, c)`` order -> the weight-shaped ``[C_out, C_in, kh, kw]`` (channels-last)
    view."""
    c_out, c_in, kh, kw = weight_shape
    return flat.view(c_out, kh, kw, c_in).permute(0, 3, 1, 2)


def conv_correlation(x: torch.Tensor, p: torch.Tensor, weight_shape: tuple[int, ...], stride: int = 1,
                     groups: int = 1, out: torch.Tensor | None = None,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""Correlation of post-synaptic factors ``p`` with the patches of the (padded) input ``x [N, C_in, H, W]``:
    :math:`\sum_{n}\sum_{\mathrm{pos}} p_{i,n,\mathrm{pos}}\; x_{n,\mathrm{patch}(\mathrm{pos})}`, shaped like the conv
    weight — the weight gradient of ``conv2d(x, w)`` for output gradient ``p``. ``p`` is either
    ``[N, C_out, H', W']`` or in rows layout ``[N·H'·W', C_out]`` (positions in ``(n, h, w)`` order).

    For ungrouped layers with patches of at least ``UNFOLD_MIN_PATCH`` values it is one matrix product ``pᵀ [C_out, N·L] @ patches [N·L, k² C_in]``, the patches
    gathered channels-last by one strided copy (:func:`patch_rows`; on our CPU faster than the oneDNN
    weight-gradient kernel for the wide 3×3 SoftHebb layers; see ``benchmarks/RESULTS.md``, section ``cpu_kernel_leads``); the result
    is in channels-last memory order (the layout :class:`HebbConv2d` keeps its weight in). Other layers use
    ``torch.nn.grad.conv2d_weight``. Memory: the patches, ``N·L·C_in·k²`` values (2.2M for the 1536-unit layer
    at batch 10). ``out`` (shaped like the weight): write the result there (a reused buffer saves allocating
    and first-touching a weight-sized tensor every step; channels-last ``out`` is written by the GEMM itself).
    ``dtype``: compute the product in this precision (:func:`update_dtype`); the result is returned in ``x``'s
    dtype (or written into ``out``)."""
    c_out, c_in_g, kh, kw = weight_shape
    n = x.shape[0]
    res_dtype = x.dtype if out is None else out.dtype
    if dtype is not None:
        x = x.to(dtype)  # keeps x's memory format (no copy if x already has the dtype)
    if groups == 1 and c_in_g * kh * kw >= UNFOLD_MIN_PATCH:
        patches = patch_rows(x, kh, kw, stride)
        a = p.to(x.dtype)
        a = a.t() if a.dim() == 2 else a.transpose(0, 1).reshape(c_out, -1)
        if a.shape[1] != patches.shape[0]:
            raise ValueError(f"conv_correlation: p has {a.shape[1]} positions, the input gives {patches.shape[0]}")
        flat = None if out is None else _ijc(out)
        if flat is not None:
            _product(a, patches, out=flat)
            return out
        res = _from_ijc(_product(a, patches, res_dtype=res_dtype), weight_shape)
        return res if out is None else out.copy_(res)
    if p.dim() == 2:  # rows -> [N, C_out, H', W']
        h2, w2 = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
        p = p.view(n, h2, w2, c_out).permute(0, 3, 1, 2)
    res = torch.nn.grad.conv2d_weight(x, weight_shape, p.to(x.dtype), stride=stride, groups=groups)
    return res.to(res_dtype) if out is None else out.copy_(res)


class Triangle(nn.Module):
    r"""Triangle activation (Coates et al. 2011; SoftHebb): :math:`y = \mathrm{ReLU}(u - \bar u)^{p}`, with
    :math:`\bar u` the mean over channels at each position. Gradient-safe at 0 for :math:`p < 1`."""

    def __init__(self, power: float = 1.0) -> None:
        super().__init__()
        if not power > 0:
            raise ValueError(f"Triangle: power must be > 0, got {power}")
        self.power = float(power)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.rectify(self.center(u))

    @staticmethod
    def center(u: torch.Tensor) -> torch.Tensor:
        r""":math:`z = u - \bar u`, the channel mean subtracted at each position."""
        return u - u.mean(dim=1, keepdim=True)

    def rectify(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathrm{ReLU}(z)^p`: monotone non-decreasing in :math:`z`, so it commutes with a max-pool
        (``rectify(maxpool(z)) == maxpool(rectify(z))``, on a quarter of the elements after a 4×4/2 pool)."""
        if self.power == 1.0:
            return F.relu(z)
        if not (torch.is_grad_enabled() and z.requires_grad):  # no gradient: the cheap form (2 passes)
            return F.relu(z).pow_(self.power)
        pos = z > 0
        return torch.where(pos, z.clamp_min(1e-12).pow(self.power), torch.zeros_like(z))

    def extra_repr(self) -> str:
        return f"power={self.power}"


class _HebbLayer(nn.Module):
    """Shared machinery of :class:`HebbConv2d` and :class:`HebbLinear` (see the module docstring)."""

    weight: nn.Parameter

    def _setup(self, rule: HebbRule, n_out: int, n_in_groups: int, cosine: bool, dale: float | None,
               generator: torch.Generator | None, update_dtype_: str | torch.dtype | None = None) -> None:
        if not isinstance(rule, HebbRule):
            raise TypeError(f"rule must be a HebbRule, got {type(rule).__name__}")
        self.rule = rule
        self.update_dtype = update_dtype(update_dtype_)
        self.cosine = bool(cosine)
        self.plastic = False
        self._scratch: torch.Tensor | None = None  # reused update buffer (not state)
        self.register_buffer("win_counts", torch.zeros(n_out, dtype=torch.float64))
        self.register_buffer("positions_seen", torch.zeros((), dtype=torch.float64))
        if dale is not None:
            if not 0.0 <= dale <= 1.0:
                raise ValueError(f"dale (fraction of excitatory inputs) must be in [0, 1], got {dale}")
            r = torch.rand(n_in_groups, generator=generator)
            self.register_buffer("dale_sign", torch.where(r < dale, 1.0, -1.0))
            self.constrain_()
        else:
            self.dale_sign = None

    # -- the rule ------------------------------------------------------------------------------------
    def modulate(self, u: torch.Tensor) -> torch.Tensor | None:
        """Activity the rule correlates, if it differs from the layer's response ``u`` (a conv layer's
        surround-filtered currents in ``rule`` surround mode); ``None``: the rule correlates ``u`` itself."""
        return None

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        """Activity in rows layout ``[positions, C]`` (the rule works along dim 1; contiguous channels make its
        softmax/argmax/sums fast): identity for linear layers, ``[N, C, H, W] -> [N·H·W, C]`` for conv."""
        return t

    def correlate(self, x: torch.Tensor, p: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\sum_n p_{in} x_n` for ``p`` in rows layout (:meth:`rows`), shaped like ``weight`` (written into
        ``out`` if given)."""
        raise NotImplementedError

    def correlate_winners(self, x: torch.Tensor, p: torch.Tensor, winners: torch.Tensor,
                          out: torch.Tensor | None = None) -> torch.Tensor | None:
        r"""The same sum when ``p`` is nonzero only at each position's winner ``winners`` (``[positions]``):
        :math:`\sum_n p_{w_n n}\, x_n` added into row :math:`w_n` (a scatter-add over positions); ``None`` where
        the layer has no such path (the dense :meth:`correlate` is used)."""
        return None

    @torch.no_grad()
    def plasticity(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Compute the normalised, rate-scaled :math:`\Delta w` from inputs ``x`` (padded for conv) and the
        layer's response ``u`` (:meth:`HebbConv2d.currents`) and subtract it from ``weight.grad`` (set to
        :math:`-\Delta w` if there is none); return ``weight.grad``. The winners are the argmax of ``u``; the rule
        correlates :meth:`modulate` (``u``, or its surround-filtered copy in ``rule`` surround mode).

        Computed in place in a buffer the layer keeps (no weight-sized temporaries; see
        :func:`~neuroplastic.hebbian.rules.hebbian_delta` and :func:`~neuroplastic.hebbian.rules.normalize_update`
        for the same arithmetic written plainly): ``buf = Σ p x``, then ``buf ← buf − c·w`` (:math:`\Delta w`),
        then ``buf ← −buf · η_i / max|buf|`` (:math:`-\Delta w`, normalised and rate-scaled)."""
        y = self.modulate(u)
        u = self.rows(u)
        y = u if y is None else self.rows(y)
        winners = u.argmax(dim=1)
        p, c = self.rule.factors(u, y, winners)
        acc = self.weight.grad
        buf = self._scratch
        if buf is None or buf is acc or buf.shape != self.weight.shape or buf.dtype != self.weight.dtype \
                or buf.device != self.weight.device or buf.stride() != self.weight.stride():
            buf = self._scratch = torch.empty_like(self.weight)  # the weight's layout (channels-last for conv)
        done = self.rule.winner_only and self.correlate_winners(x, p, winners, out=buf) is not None
        if not done:
            self.correlate(x, p, out=buf)
        shape = (-1,) + (1,) * (buf.dim() - 1)
        buf.addcmul_(c.to(buf.dtype).view(shape), self.weight, value=-1.0)  # Δw = Σ p x − c·w
        scale = -1.0 / (max_abs(buf) + 1e-30)  # the gradient is −Δw: the sign rides on the scaling pass
        r = self.rule.rate(self.weight)
        buf.mul_(scale if r is None else (r.to(buf.dtype) * scale).view(shape))
        if acc is None:
            self.weight.grad = buf
        else:
            acc.add_(buf)
        self.win_counts += torch.bincount(winners.flatten(), minlength=u.shape[1]).double()
        self.positions_seen += u.numel() / u.shape[1]
        return self.weight.grad

    @torch.no_grad()
    def constrain_(self) -> None:
        """Dale's law: every weight from input (channel) ``j`` has the sign ``dale_sign[j]`` (clip the rest to 0)."""
        if self.dale_sign is None:
            return
        shape = (1, -1) + (1,) * (self.weight.dim() - 2)
        s = self.dale_sign.view(shape).to(self.weight.dtype)
        self.weight.copy_(s * F.relu(s * self.weight))

    def winner_frequency(self) -> torch.Tensor:
        """Fraction of positions each unit won during plastic forward passes ``[C]`` (0 = dead unit)."""
        return (self.win_counts / self.positions_seen.clamp_min(1)).float()

    def _current_weight(self) -> torch.Tensor:
        w = self.rule.current_weight(self.weight)
        if self.cosine:
            w = w / unit_norms(w).clamp_min(1e-12).view(-1, *([1] * (w.dim() - 1)))
        return w


class HebbConv2d(_HebbLayer):
    r"""2-D convolution whose kernels learn by a local rule (Journé et al. 2023; Nimmo & Mondragón 2025).

    Currents :math:`u_{i,n} = \langle w_i, x_{\mathrm{patch}(n)}\rangle` (``cosine``: divided by
    :math:`\lVert w_i\rVert\,\lVert x_{\mathrm{patch}(n)}\rVert`). Input ``[N, C_in, H, W]``, output the currents
    ``[N, C_out, H', W']`` (activation and pooling are separate modules). With ``plastic`` and in training
    mode, a forward pass also computes the rule's update (see the module docstring).

    Args:
        rule: a :class:`~neuroplastic.hebbian.rules.HebbRule`.
        padding_mode: ``reflect`` (SoftHebb) or ``zeros``.
        groups: ``groups = in_channels`` gives a depthwise conv.
        dog: ``(size, sigma_e, sigma_i)`` of a difference-of-Gaussians surround kernel
            (:func:`~neuroplastic.hebbian.rules.dog_kernel`) applied depthwise to the currents, zero-padded
            (Nimmo & Mondragón 2025); ``None`` for none.
        surround: where the kernel acts. ``response`` (the authors' code): the layer's response is
            :math:`y = k_{\mathrm{DoG}} * u`, which the next module receives, the competition (argmax) runs on
            and the rule correlates; the kernel's Gaussians are normalised by :math:`2\pi\sigma^2`. ``rule``:
            the response and the competition use the plain currents, only the activity the rule correlates is
            filtered, by a kernel whose Gaussians are normalised by their sums (zero-sum kernel).
        dale: fraction of excitatory input channels for a Dale's-law sign constraint (``None``: off).
        update_dtype: precision of the update's correlation product (:func:`update_dtype`; ``None``: the
            weight's). Only the dense product: the winner-only scatter-add of hard-WTA/BCM stays in float32.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, rule: HebbRule, *, stride: int = 1,
                 padding: int = 0, padding_mode: str = "reflect", groups: int = 1, cosine: bool = False,
                 dog: tuple[int, float, float] | None = None, surround: str = "response", init: str = "softhebb",
                 dale: float | None = None, generator: torch.Generator | None = None,
                 update_dtype: str | torch.dtype | None = None) -> None:
        super().__init__()
        if min(in_channels, out_channels, kernel_size, stride, groups) < 1 or padding < 0:
            raise ValueError(f"HebbConv2d: bad shape arguments in={in_channels} out={out_channels} "
                             f"k={kernel_size} stride={stride} padding={padding} groups={groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"HebbConv2d: groups={groups} must divide in={in_channels} and out={out_channels}")
        if padding_mode not in ("reflect", "zeros"):
            raise ValueError(f"HebbConv2d: padding_mode must be 'reflect' or 'zeros', got {padding_mode!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.padding_mode, self.groups = stride, padding, padding_mode, groups
        w = torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size)
        init_weight(w, init, generator)
        # channels-last weight: the conv then returns channels-last currents (the rule's rows layout is a view
        # of them, pooling is fast), and the update's GEMM writes the weight's memory order directly
        self.weight = nn.Parameter(w.contiguous(memory_format=torch.channels_last))
        if surround not in ("response", "rule"):
            raise ValueError(f"HebbConv2d: surround must be 'response' or 'rule', got {surround!r}")
        self.surround = surround if dog is not None else None
        if dog is not None:
            size, se, si = dog
            norm = "area" if surround == "response" else "sum"
            self.register_buffer("dog", dog_kernel(int(size), float(se), float(si), norm).view(1, 1, size, size))
        else:
            self.dog = None
        self._setup(rule, out_channels, in_channels, cosine, dale, generator, update_dtype)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``x`` by ``padding`` (reflect needs ``padding < H, W``; falls back to zeros if not)."""
        p = self.padding
        if p == 0:
            return x
        if self.padding_mode == "reflect" and p < min(x.shape[-2:]):
            return F.pad(x, (p, p, p, p), mode="reflect")
        return F.pad(x, (p, p, p, p))

    def currents(self, xp: torch.Tensor) -> torch.Tensor:
        """The layer's response to the padded input ``xp``: the currents, surround-filtered in ``response`` mode."""
        u = F.conv2d(xp, self._current_weight(), stride=self.stride, groups=self.groups)
        if self.cosine:  # patch norms: sum x² over each group's channels first, then a k×k box sum
            k, g = self.kernel_size, self.groups
            n, c, h, w = xp.shape
            sq = (xp * xp).view(n, g, c // g, h, w).sum(2)
            pn = F.conv2d(sq, xp.new_ones(g, 1, k, k), stride=self.stride, groups=g).clamp_min(1e-12).sqrt()
            u = u / (pn if g == 1 else pn.repeat_interleave(self.out_channels // g, dim=1))
        return self._surround(u) if self.surround == "response" else u

    def _surround(self, u: torch.Tensor) -> torch.Tensor:
        c, k = u.shape[1], self.dog.shape[-1]
        return F.conv2d(u, self.dog.to(u.dtype).expand(c, 1, k, k), padding=k // 2, groups=c)

    def modulate(self, u: torch.Tensor) -> torch.Tensor | None:
        return self._surround(u) if self.surround == "rule" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"HebbConv2d expects [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        xp = self.pad(x)
        u = self.currents(xp)
        if self.plastic and self.training:
            self.plasticity(xp.detach(), u.detach())
        return u

    def rows(self, t):
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    def correlate(self, x, p, out=None):
        return conv_correlation(x, p, tuple(self.weight.shape), self.stride, self.groups, out=out,
                                dtype=self.update_dtype)

    def correlate_winners(self, x, p, winners, out=None):
        if self.groups != 1:
            return None
        cols = patch_rows(x, self.kernel_size, self.kernel_size, self.stride)  # (i, j, c) features
        pw = p.gather(1, winners.view(-1, 1)).flatten().to(x.dtype)  # [N·L] winners' factors
        flat = None if out is None else _ijc(out)
        corr = x.new_zeros(self.out_channels, cols.shape[1]) if flat is None else flat.zero_()
        corr.index_add_(0, winners.flatten(), cols * pw[:, None])
        if flat is not None:
            return out
        res = _from_ijc(corr, tuple(self.weight.shape))
        return res if out is None else out.copy_(res)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding} ({self.padding_mode}), groups={self.groups}, cosine={self.cosine}, "
                f"dog={self.dog is not None}, surround={self.surround}, dale={self.dale_sign is not None}"
                + (f", update_dtype={self.update_dtype}" if self.update_dtype is not None else ""))


class HebbLinear(_HebbLayer):
    r"""Fully connected layer whose weights learn by a local rule: :math:`u_{in} = \langle w_i, x_n\rangle`
    (``cosine``: :math:`\cos(w_i, x_n)`); input ``[N, D]`` (or any ``[N, ...]``, flattened), output ``[N, C]``.
    Same rules and options as :class:`HebbConv2d` (no surround inhibition), ``update_dtype`` included."""

    def __init__(self, in_features: int, out_features: int, rule: HebbRule, *, cosine: bool = False,
                 init: str = "softhebb", dale: float | None = None, generator: torch.Generator | None = None,
                 update_dtype: str | torch.dtype | None = None) -> None:
        super().__init__()
        if min(in_features, out_features) < 1:
            raise ValueError(f"HebbLinear: sizes must be >= 1, got {in_features}, {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        init_weight(self.weight, init, generator)
        self._setup(rule, out_features, in_features, cosine, dale, generator, update_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"HebbLinear expects {self.in_features} input features, got {x.shape[1]}")
        u = x @ self._current_weight().t()
        if self.cosine:
            u = u / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if self.plastic and self.training:
            self.plasticity(x.detach(), u.detach())
        return u

    def correlate(self, x, p, out=None):
        xc = x if self.update_dtype is None else x.to(self.update_dtype)
        return _product(p.to(xc.dtype).t(), xc, out=out, res_dtype=x.dtype)

    def correlate_winners(self, x, p, winners, out=None):
        pw = p.gather(1, winners.unsqueeze(1)).squeeze(1).to(x.dtype)
        corr = x.new_zeros(self.weight.shape) if out is None else out.zero_()
        return corr.index_add_(0, winners, x * pw[:, None])

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, cosine={self.cosine}, dale={self.dale_sign is not None}"
                + (f", update_dtype={self.update_dtype}" if self.update_dtype is not None else ""))
