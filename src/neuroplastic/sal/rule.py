r"""The spike-based alignment learning (SAL) rule — Gierlich, Baumbach, Kungl, Max & Petrovici 2025
(arXiv 2503.02642, "Weight transport through spike timing for robust local gradients").

A plastic synapse from a *pre* unit to a *post* unit changes with every pair of their spikes,
:math:`\Delta t = t_\text{post} - t_\text{pre}`:

.. math::

    K(\Delta t) = \begin{cases} -A\,k(\Delta t) & \Delta t > 0 \text{ (causal: anti-Hebbian)}\\
                                 +A\,k(-\Delta t) & \Delta t < 0 \text{ (anti-causal: Hebbian)}\\
                                 0 & \Delta t = 0 \end{cases}
    \qquad k(d) = e^{-d/\tau} \;\text{(exponential)} \;\text{or}\; \max(0, 1 - d/c) \;\text{(triangular)},
    \quad d \le c \text{ (the cut)}.

A feedback synapse ``B`` (pre = upper-layer unit, post = lower-layer unit) thus grows with the spikes the
forward weight ``W`` causes in the upper unit (anti-causal pairs) and shrinks with those it causes itself (causal
pairs): its fixed point is ``B = W`` — each weight converges to its reciprocal. Spikes of the same step are
not paired (discrete time: a spike acts on the next step).

**Pairing.** ``all``: every pair within the cut (all-pairs, through traces :math:`x(t) = \sum_{d=1}^{c} k(d)
s(t-d)`); ``nearest``: each spike pairs only with the nearest earlier spike of the other unit
(:math:`x(t) = k(t - t_\text{last})`). Both are computed online from a carry of the last ``cut`` steps (no
buffer of the whole run), and a block of ``T`` steps is one matrix product:

.. math::

    \Delta P = A\,\big( (X_\text{post} \circ \ldots)^\top S_\text{pre}\,(1+\epsilon^+) \;-\;
                          S_\text{post}^\top X_\text{pre}\,(1+\epsilon^-) \big)

with ``S``, ``X`` the spikes and traces stacked over steps and parallel networks (rows) and ``ΔP`` in the
projection's ``[post, pre]`` shape. :math:`\epsilon^\pm` is the optional plasticity noise: a fixed amplitude
``1 + ε`` per synapse and direction, :math:`\epsilon \sim \mathcal{N}(0, \sigma)` truncated at ±1.5σ.
"""

from __future__ import annotations

import dataclasses
import math

import torch

__all__ = ["PAIRINGS", "WINDOWS", "SALRule", "SALTrace", "averaging_bound", "fixed_point_bias", "noise_floor",
           "phase_noise", "plasticity_noise", "relaxation_angle", "relaxation_floor", "sal_block", "sal_event_ops",
           "sal_pairs", "sal_step"]

WINDOWS = ("exponential", "triangular")
PAIRINGS = ("all", "nearest")


@dataclasses.dataclass(frozen=True)
class SALRule:
    """The SAL window: ``amplitude`` A, time constant ``tau`` (steps; the paper's τ = τ_ref), ``cut`` (steps;
    pairs further apart do not count; 2τ_ref in the deep-network study), ``window`` (:data:`WINDOWS`) and
    ``pairing`` (:data:`PAIRINGS`)."""

    amplitude: float = 1.0
    tau: float = 10.0
    cut: int = 20
    window: str = "exponential"
    pairing: str = "all"

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {self.window!r}")
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if not (isinstance(self.cut, int) and 1 <= self.cut <= 10_000):
            raise ValueError(f"cut must be an integer number of steps from 1 to 10000, got {self.cut!r}")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        if not math.isfinite(self.amplitude):
            raise ValueError(f"amplitude must be finite, got {self.amplitude!r}")

    def kernel(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``k(d)`` for ``d = 1 … cut`` (``[cut]``)."""
        d = torch.arange(1, self.cut + 1, device=device, dtype=torch.float64)
        k = torch.exp(-d / self.tau) if self.window == "exponential" else (1 - d / self.cut).clamp_min(0)
        return k.to(dtype)


class SALTrace:
    """Online traces of one population's spikes for :func:`sal_step`: the last ``cut`` steps of spikes
    (all-pairs) or the steps since each unit's last spike (nearest), for ``R`` parallel networks."""

    def __init__(self, rule: SALRule, shape: tuple[int, int], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.rule = rule
        r, n = shape
        if rule.pairing == "all":
            self.carry = torch.zeros(rule.cut, r, n, device=device, dtype=dtype)  # oldest first
        else:
            self.since = torch.full((r, n), rule.cut + 1, device=device, dtype=torch.long)  # "never" = beyond cut
        self._k = rule.kernel(device, dtype)
        self._bands: dict[bool, torch.Tensor] = {}  # the window as a band, past (False) and future (True)

    def _band(self, future: bool = False) -> torch.Tensor:
        """The window as a band over a sub-block of ``c`` steps (``c`` = cut): ``[c, 2c - 1]`` with
        ``K[t, c + t - d] = k(d)`` (row ``t`` weighs the ``c`` steps before it), or with ``future`` ``[c, 2c]`` with
        ``K[t, t + d] = k(d)`` (the ``c`` steps after it)."""
        if future not in self._bands:
            c = self.rule.cut
            k = torch.zeros(c, 2 * c if future else 2 * c - 1, dtype=self._k.dtype, device=self._k.device)
            rows = torch.arange(c, device=k.device)
            for d in range(1, c + 1):
                k[rows, rows + d if future else c + rows - d] = self._k[d - 1]
            self._bands[future] = k
        return self._bands[future]

    def _advance(self, s: torch.Tensor) -> torch.Tensor:
        """The last ``cut`` steps remembered and the block ``s``, ``[cut + T, R, N]``; then remember ``s`` (all-pairs)."""
        hist = torch.cat([self.carry, s])
        self.carry = hist[-self.rule.cut:].clone()
        return hist

    def _filter(self, h: torch.Tensor, n: int, future: bool = False) -> torch.Tensor:
        """``x[t] = Σ_{d=1}^{c} k(d) h[c + t - d]`` for ``t < n`` (``future``: ``Σ_d k(d) h[t + d]``) from ``h``
        ``[T', R, N]`` (``c`` = cut; rows past its end count as zero). Banded over time: sub-blocks of ``c`` steps
        each need a window of ``2c - 1`` (``2c``) steps of ``h``, so one batched product over overlapping windows
        does the band's work only."""
        c = self.rule.cut
        n_blk, width = -(-n // c), 2 * c if future else 2 * c - 1
        rows = c * (n_blk - 1) + width
        flat = h.flatten(1)[:rows]
        if (pad := rows - flat.shape[0]) > 0:
            flat = torch.cat([flat, flat.new_zeros(pad, flat.shape[1])])
        windows = flat.as_strided((n_blk, width, flat.shape[1]), (c * flat.stride(0), flat.stride(0), 1))
        return (self._band(future) @ windows).flatten(0, 1)[:n].view(n, *h.shape[1:])

    def traces(self, spikes: torch.Tensor) -> torch.Tensor:
        """The trace at every step of ``spikes`` ``[T, R, N]`` from the spikes *before* that step, then remember
        ``spikes``: ``x[t] = Σ_{d=1}^{cut} k(d) s[t-d]`` (all) or ``k(steps since the last earlier spike)``."""
        s = spikes.to(self._k.dtype)
        t_len = s.shape[0]
        if self.rule.pairing == "all":
            return self._filter(self._advance(s), t_len)
        # nearest: k(steps since the last spike before t), 0 beyond the cut (the table's last entry)
        cut = self.rule.cut
        table = torch.cat([self._k, self._k.new_zeros(1)])
        since = self.since.clone()  # in 1 … cut + 1
        out, fired = torch.empty_like(s), spikes.bool()
        for t in range(t_len):
            torch.index_select(table, 0, since.view(-1) - 1, out=out[t].view(-1))
            since.add_(1).masked_fill_(fired[t], 1).clamp_max_(cut + 1)
        self.since = since
        return out

    def block_terms(self, spikes: torch.Tensor, pre: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All-pairs terms of a block for :func:`sal_block`, then remember ``spikes`` ``[T, R, N]``: the spikes of the
        ``c`` steps before the block and of the block, ``hist`` ``[c + T, R, N]``, and on the same steps
        ``y = f − x``, with ``f[i] = Σ_d k(d) s[i + d]`` the window over the block's *later* spikes and ``x`` the
        trace of the earlier ones (:meth:`traces`; zero on the ``c`` steps before the block). A population that is
        pre of no projection needs only ``hist`` (``pre=False``: ``y`` is ``None``)."""
        if self.rule.pairing != "all":
            raise ValueError("block_terms: all-pairs only (nearest-spike pairing uses traces() and sal_pairs)")
        s = spikes.to(self._k.dtype)
        c, t_len = self.rule.cut, s.shape[0]
        hist = self._advance(s)
        if not pre:
            return hist, None
        # f[i] = Σ_d k(d) s[i - c + d]: the block's spikes after step i (i counts from c steps before the block)
        zeros = s.new_zeros(c, *s.shape[1:])
        y = self._filter(torch.cat([zeros, s, zeros]), t_len + c, future=True)
        y[c:] -= self._filter(hist, t_len)
        return hist, y


def plasticity_noise(shape: tuple[int, ...], sigma: float, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """A fixed multiplicative amplitude ``1 + ε`` per synapse, ``ε ~ N(0, σ)`` truncated at ±1.5σ (Gierlich et al.'s
    plasticity noise; draw one per direction)."""
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"plasticity noise sigma must be >= 0, got {sigma!r}")
    eps = torch.empty(shape)
    torch.nn.init.trunc_normal_(eps, 0.0, sigma if sigma > 0 else 1.0, -1.5 * sigma, 1.5 * sigma,
                                generator=generator)
    return 1.0 + (eps if sigma > 0 else torch.zeros(shape))


def sal_pairs(pre: torch.Tensor, post: torch.Tensor, x_pre: torch.Tensor, x_post: torch.Tensor, *,
              amplitude: float = 1.0, noise: tuple[torch.Tensor, torch.Tensor] | None = None,
              per_net: bool = False) -> torch.Tensor:
    """``ΔP = A (X_postᵀ S_pre ∘ (1+ε⁺) − S_postᵀ X_pre ∘ (1+ε⁻))`` from spikes ``S`` and their traces ``X``
    (``[T, R, N]``, traces from :meth:`SALTrace.traces`): summed over steps and networks ``[N_post, N_pre]``, or
    per network ``[R, N_post, N_pre]``. A population's traces are computed once and serve every projection it
    is pre or post of."""
    dt = x_pre.dtype
    if per_net:
        hebb = torch.einsum("tri,trj->rij", x_post, pre.to(dt))
        anti = torch.einsum("tri,trj->rij", post.to(dt), x_pre)
    else:
        hebb = x_post.flatten(0, 1).t() @ pre.to(dt).flatten(0, 1)  # [N_post, N_pre]: post earlier, pre now
        anti = post.to(dt).flatten(0, 1).t() @ x_pre.flatten(0, 1)  # post now, pre earlier
    if noise is not None:
        hebb, anti = hebb * noise[0], anti * noise[1]
    return amplitude * (hebb - anti)


def sal_block(pre_y: torch.Tensor, post_hist: torch.Tensor, *, amplitude: float = 1.0) -> torch.Tensor:
    r"""The all-pairs SAL update of a projection over a block, ``[N_post, N_pre]``, as one product:
    :math:`\Delta P = A\, H_\text{post}^\top Y_\text{pre}` with ``post_hist`` = ``H`` and ``pre_y`` = ``Y`` the
    :meth:`SALTrace.block_terms` of the two populations.

    Equal to :func:`sal_pairs` over the block's traces (the same pairs, those whose later spike is in the block):
    a post spike at step ``t`` (in the block or the ``c`` steps before it) pairs with the block's later pre spikes
    (anti-causal, :math:`+A\,k(d)`: the ``f`` part of ``Y``) and, when in the block, with the earlier pre spikes
    (causal, :math:`-A\,k(d)`: the ``-x`` part). :math:`X_\text{post}^\top S_\text{pre}` and
    :math:`S_\text{post}^\top X_\text{pre}` are two products over the block; this is one, over ``c`` more steps.
    Without plasticity noise only (its amplitudes weigh the two halves differently)."""
    return amplitude * (post_hist.flatten(0, 1).t() @ pre_y.flatten(0, 1))


def sal_event_ops(pre_spikes: float, post_spikes: float, n_pre: int, n_post: int) -> float:
    r"""Accumulates of the trace-based SAL rule on a projection ``pre → post`` run event by event (the native route's
    sums; an on-chip STDP circuit's work): every pre spike adds the post population's traces to its column of the
    anti-causal sum, every post spike the pre population's traces to its row of the causal sum,

    .. math::  n_\text{AC} = S_\text{pre} N_\text{post} + S_\text{post} N_\text{pre}

    for ``S`` spikes (over networks and steps) of populations of ``N`` units (Gierlich et al. 2025's pairing through
    traces, :func:`sal_pairs`)."""
    return pre_spikes * n_post + post_spikes * n_pre


def sal_step(pre: torch.Tensor, post: torch.Tensor, pre_trace: SALTrace, post_trace: SALTrace, *,
             noise: tuple[torch.Tensor, torch.Tensor] | None = None, per_net: bool = False) -> torch.Tensor:
    """The SAL update of a projection ``pre → post`` over a block of steps: ``ΔP`` ``[N_post, N_pre]`` summed over
    the ``T`` steps and ``R`` parallel networks of ``pre`` ``[T, R, N_pre]`` and ``post`` ``[T, R, N_post]``
    (spikes, 0/1); ``per_net``: ``[R, N_post, N_pre]``, one update per network. The traces advance by the block.
    ``noise``: ``(1 + ε⁺, 1 + ε⁻)`` amplitudes in ``ΔP``'s shape for the anti-causal (Hebbian) and causal
    (anti-Hebbian) halves (:func:`plasticity_noise`).

    ``ΔP = A (X_postᵀ S_pre − S_postᵀ X_pre)``: a pre spike pairs with the earlier post spikes (anti-causal, +A),
    a post spike with the earlier pre spikes (causal, −A)."""
    x_pre = pre_trace.traces(pre)
    x_post = post_trace.traces(post)
    return sal_pairs(pre, post, x_pre, x_post, amplitude=pre_trace.rule.amplitude, noise=noise, per_net=per_net)


def phase_noise(sum_a: torch.Tensor, sum_b: torch.Tensor, n: tuple[int, int]) -> float:
    r"""The sampling noise of an update averaged over independent networks, from two halves of them: with
    ``sum_a``, ``sum_b`` the summed updates of ``n = (n_a, n_b)`` networks (same weights, independent spikes),
    the average :math:`\Delta = (S_a + S_b)/(n_a + n_b)` has noise energy

    .. math::  \mathbb{E}\,\lVert \Delta - \mathbb{E}\Delta \rVert^2
               = \frac{n_a n_b}{(n_a + n_b)^2}\; \mathbb{E}\,\Big\lVert \frac{S_a}{n_a} - \frac{S_b}{n_b} \Big\rVert^2,

    estimated without bias by the right side's observed value (returned). Used on SAL's phases (Gierlich et al.
    2025: 32 networks per block) to tell a noise floor of the alignment from a biased fixed point."""
    n_a, n_b = n
    if n_a < 1 or n_b < 1:
        raise ValueError(f"phase_noise needs two non-empty halves, got {n}")
    diff = sum_a / n_a - sum_b / n_b
    return float(diff.pow(2).sum()) * n_a * n_b / (n_a + n_b) ** 2


def fixed_point_bias(w: torch.Tensor, u_a: torch.Tensor, u_b: torch.Tensor, pull: float,
                     ratio: float = 1.0) -> dict[str, float]:
    r"""How far from ``W`` the noise-free fixed point of a SAL phase lies (Gierlich et al. 2025 claim
    :math:`B \to W`). ``u_a``, ``u_b``: the updates of two phases with independent spikes, both started at
    :math:`B = W`; each is :math:`u = d + \xi` with :math:`d` the expected update there (the drift: zero exactly when
    ``W`` is the fixed point) and :math:`\xi` zero-mean noise independent between the phases, so
    :math:`\mathbb{E}\langle u_a, u_b\rangle = \lVert d\rVert^2` and
    :math:`\mathbb{E}\langle u_a + u_b, W\rangle / 2 = \langle d, W\rangle` (the noise's share of either inner
    product is of order :math:`1/\sqrt{n}` of its scale over ``n`` synapses). With the phase's ``pull``
    :math:`\kappa` (:func:`noise_floor`'s, from a start away from ``W``) the relaxation
    :math:`B' = B + \kappa(W - B) + d` rests at :math:`B^* = W + d/\kappa`. Returns, relative to
    :math:`\lVert W\rVert`:

    - ``drift`` :math:`\sqrt{\max(\langle u_a, u_b\rangle, 0)}/\lVert W\rVert` per phase, ``drift_along`` its
      component along ``W`` (signed: negative shrinks ``B``), and ``noise``
      :math:`\sqrt{(\lVert u_a\rVert^2 + \lVert u_b\rVert^2)/2 - \langle u_a, u_b\rangle}/\lVert W\rVert`;
    - ``corr``: the cosine of ``u_a`` and ``u_b`` (0: the updates at ``W`` are noise; 1: all drift);
    - ``bias_deg``: the angle of :math:`B^*` from ``W``,
      :math:`\operatorname{atan2}(d_\perp/\kappa,\ 1 + d_\parallel/\kappa)` with :math:`d_\parallel` = ``drift_along``
      and :math:`d_\perp = \sqrt{\max(\text{drift}^2 - d_\parallel^2, 0)}`, present when :math:`\kappa > 0`.

    A bias above the target angle cannot be averaged away by more networks or steps per phase.

    ``ratio`` :math:`r`: the phases started at :math:`B = rW` instead (a ``B`` held at its norm,
    ``sal_bnorm="initial"``, sits at :math:`r = \lVert B\rVert/\lVert W\rVert`); their expected update is then
    :math:`\kappa(1-r)W + d`, the pull is taken off ``drift_along`` (``drift`` is :math:`\lVert d\rVert`), and the
    fixed point of ``B`` held at that norm, :math:`B^* \parallel (1-\kappa)B^* + \kappa W + d`, lies at the same
    angle to first order: :math:`\tan\theta = d_\perp / (\kappa + d_\parallel)`."""
    scale = float(w.norm())
    if scale == 0:
        raise ValueError("fixed_point_bias needs a non-zero W")
    if not ratio > 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    ab = float((u_a * u_b).sum())
    aa, bb = float(u_a.pow(2).sum()), float(u_b.pow(2).sum())
    total = math.sqrt(max(ab, 0.0)) / scale
    along_total = float(((u_a + u_b) * w).sum()) / 2 / scale**2
    across = math.sqrt(max(total**2 - along_total**2, 0.0))
    along = along_total - pull * (1 - ratio)  # the pull towards W from B = rW is not a bias
    out = {"drift": math.sqrt(max(total**2 - along_total**2 + along**2, 0.0)), "drift_along": along,
           "noise": math.sqrt(max((aa + bb) / 2 - ab, 0.0)) / scale,
           "corr": ab / math.sqrt(aa * bb) if aa * bb > 0 else float("nan")}
    if pull > 0:
        out["bias_deg"] = math.degrees(math.atan2(across / pull, 1 + along / pull))
    return out


def relaxation_floor(noise: float, kappa: float, ratio: float = 1.0) -> float:
    r"""The stationary angle(B, W) in degrees of the noisy relaxation of a SAL phase (Gierlich et al. 2025),
    :math:`B' = B + \kappa (W - B) + \xi` with :math:`\lVert\xi\rVert` = ``noise`` :math:`\lVert W\rVert`, when
    ``B`` is held at ``ratio`` :math:`= \lVert B\rVert / \lVert W\rVert` after every phase (``sal_bnorm``
    "initial"; 1: the paper's rule, whose ``B`` settles at ``W``'s norm). Linearised in the angle: the part of ``B``
    off ``W`` shrinks by :math:`\rho = (1-\kappa) r / P` per phase, :math:`P = (1-\kappa) r + \kappa` the part
    along it, and each phase adds :math:`\xi / P`, so

    .. math::  \tan\theta = \frac{\text{noise}}{P\sqrt{1-\rho^2}}
               = \frac{\text{noise}}{\sqrt{\kappa^2 + 2\kappa(1-\kappa)\,r}},

    which at :math:`r = 1` is :math:`\text{noise} / \sqrt{\kappa(2-\kappa)}`. A ``B`` held well below ``W``'s
    norm sees the same noise against a smaller signal: a higher floor. Needs :math:`0 < \kappa < 1`, ``ratio`` > 0."""
    if not 0 < kappa < 1:
        raise ValueError(f"kappa must be in (0, 1), got {kappa}")
    if not ratio > 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    return math.degrees(math.atan(noise / math.sqrt(kappa ** 2 + 2 * kappa * (1 - kappa) * ratio)))


def noise_floor(b_start: torch.Tensor, b_end: torch.Tensor, w: torch.Tensor, noise_sq: float,
                held: bool = False) -> dict[str, float]:
    r"""How close a noisy relaxation ``B → W`` (a SAL phase: Gierlich et al. 2025) can bring ``B``. Modelled per
    phase as :math:`B' = B + \kappa (W - B) + \xi` with :math:`\mathbb{E}\lVert\xi\rVert^2` = ``noise_sq``
    (:func:`phase_noise`, summed over the phase's blocks):

    - ``noise`` :math:`= \lVert\xi\rVert / \lVert W \rVert`, the phase's noise relative to the target;
    - ``pull`` :math:`\hat\kappa = -\langle B' - B,\, B - W\rangle / \lVert B - W \rVert^2`, the fraction of the
      distance to ``W`` the phase closes on average (the noise's share of the inner product is negligible in
      high dimension);
    - ``floor_deg``: the stationary angle of that process, :math:`\arctan\big(\text{noise} /
      \sqrt{\kappa(2 - \kappa)}\big)` (the stationary :math:`\lVert B - W\rVert^2 = \mathbb{E}\lVert\xi\rVert^2 /
      (1 - (1-\kappa)^2)`), present only when :math:`0 < \hat\kappa < 1`; with ``held`` (``B`` rescaled back to
      its norm after the phase, ``sal_bnorm`` "initial") that of :func:`relaxation_floor` at
      :math:`r = \lVert B\rVert / \lVert W\rVert` of ``b_start``.

    - ``estimate`` :math:`= \text{noise}/\hat\kappa`, present when :math:`\hat\kappa > 0`: the noise, relative to
      ``W``, of the estimate of ``W`` the phase makes, :math:`\hat W = B + (B' - B)/\kappa = W + \xi/\kappa`; it is
      the same whatever the rate (noise and pull both scale with it) and falls as :math:`1/\sqrt{R}` in the
      networks, so :func:`averaging_bound` turns the estimates of a run's phases into the best angle any rate could
      have reached with them.

    A ``B`` that levels off at ``floor_deg`` is limited by the phase's sampling noise (more networks or steps per
    phase, or a smaller rate, lower it); one that levels off above it sits at a biased fixed point."""
    scale = float(w.norm())
    gap = b_start - w
    out = {"noise": noise_sq ** 0.5 / scale if scale > 0 else float("nan")}
    gap_sq = float(gap.pow(2).sum())
    if gap_sq > 0:
        out["pull"] = -float(((b_end - b_start) * gap).sum()) / gap_sq
        kappa = out["pull"]
        if kappa > 0:
            out["estimate"] = out["noise"] / kappa
        if 0 < kappa < 1 and scale > 0:
            ratio = float(b_start.norm()) / scale if held else 1.0
            if ratio > 0:
                out["floor_deg"] = relaxation_floor(out["noise"], kappa, ratio)
    return out


def averaging_bound(estimates: list[float]) -> float:
    r"""The smallest angle(B, W) in degrees that phases with estimate noises ``estimates`` (:func:`noise_floor`'s
    ``estimate`` :math:`s_k`, relative to :math:`\lVert W\rVert`) can reach at fixed ``W`` (Gierlich et al. 2025's
    relaxation :math:`B \to W`, with any rates :math:`\kappa_k` per phase):

    .. math::  \tan\theta \;\geq\; \Big(\sum_k s_k^{-2}\Big)^{-1/2}.

    Why: after the phases, :math:`B = \pi_0 B_0 + \sum_k c_k \hat W_k` with :math:`\hat W_k = W + \xi_k/\kappa_k`
    the phases' estimates (independent noise) and weights set by the rates; the angle is scale-free and a start
    :math:`B_0` drawn independently of ``W`` adds no signal, so the best is the inverse-variance average of the
    estimates (Gauss-Markov), whose noise relative to its signal is the right side (in high dimension the noise is
    almost all across ``W``: :math:`\tan\theta \approx \lVert e\rVert / \lVert W \rVert`). A constant rate
    averages about :math:`(2 - \kappa)/\kappa` phases (its stationary angle, :func:`noise_floor`'s ``floor_deg``);
    with ``K`` equal phases the bound is :math:`\arctan(s/\sqrt K)`, so an angle target :math:`\theta^*` needs
    :math:`(s / \tan\theta^*)^2` phases' worth of samples whatever the schedule. A moving ``W`` or a biased
    phase only raise the angle above it. ``nan`` without estimates; ``ValueError`` for a non-positive one."""
    if any(not (math.isfinite(s) and s > 0) for s in estimates):
        raise ValueError(f"estimate noises must be finite and > 0, got {estimates}")
    if not estimates:
        return float("nan")
    return math.degrees(math.atan(sum(s ** -2 for s in estimates) ** -0.5))


def relaxation_angle(estimates: list[float], pulls: list[float], start: float = 1.0) -> float:
    r"""The expected angle(B, W) in degrees after SAL phases ``k = 1 … K`` (Gierlich et al. 2025's relaxation
    :math:`B \to W`) with pulls :math:`\kappa_k` (``pulls``: the fraction of the distance to ``W`` each phase closes,
    :func:`noise_floor`'s ``pull``; a rate schedule's pulls scale with its rates) and estimate noises :math:`s_k`
    (``estimates``, relative to :math:`\lVert W\rVert`, :func:`noise_floor`'s ``estimate``), at fixed ``W``, from a
    start ``B₀`` drawn independently of ``W`` with :math:`\lVert B_0\rVert` = ``start`` :math:`\lVert W\rVert`.
    Each phase is :math:`B' = B + \kappa_k (\hat W_k - B)`, :math:`\hat W_k = W + \xi_k` with independent
    :math:`\lVert\xi_k\rVert = s_k \lVert W\rVert`, so :math:`B_K = \pi_0 B_0 + \sum_k c_k \hat W_k` with
    :math:`c_k = \kappa_k \prod_{j>k} (1 - \kappa_j)`, :math:`\pi_0 = \prod_k (1 - \kappa_k)`, and in high dimension
    (noise and start almost all across ``W``)

    .. math::  \tan\theta = \frac{\big(\sum_k c_k^2 s_k^2 + \pi_0^2\,\text{start}^2\big)^{1/2}}{\sum_k c_k}.

    With :math:`\kappa_k = 1/k` every phase weighs :math:`1/K`: equal estimates reach :func:`averaging_bound`, which
    no schedule beats; a constant :math:`\kappa` tends to :func:`relaxation_floor` at noise :math:`\kappa s`. What the
    suites' predictions of a schedule's end angle come from (a moving ``W`` or a biased phase only raise it).
    Needs as many pulls as estimates, pulls in (0, 1], estimates > 0 and ``start`` >= 0."""
    if len(pulls) != len(estimates) or not estimates:
        raise ValueError(f"need one pull per estimate and at least one phase, got {len(pulls)} and {len(estimates)}")
    if any(not (math.isfinite(s) and s > 0) for s in estimates):
        raise ValueError(f"estimate noises must be finite and > 0, got {estimates}")
    if any(not (0 < k <= 1) for k in pulls):
        raise ValueError(f"pulls must be in (0, 1], got {pulls}")
    if not (math.isfinite(start) and start >= 0):
        raise ValueError(f"start must be finite and >= 0, got {start}")
    signal, var, rest = 0.0, 0.0, start
    for s, kappa in zip(estimates, pulls):
        signal = (1 - kappa) * signal + kappa
        var = (1 - kappa) ** 2 * var + (kappa * s) ** 2
        rest *= 1 - kappa
    return math.degrees(math.atan2(math.sqrt(var + rest ** 2), signal))
