"""Rayleigh fast fading with statistical CSI (``fading: "rayleigh"``, ``csi: "statistical"``).

The closed forms of MODEL.md §5 (thresholds, expected energies, outage, per-node table; derived
in ``docs/fading.md``); drawing realisations is the simulator's (:mod:`siftopt.analysis.simulate`).
The full-power rates at the mean gains are handed in by the owner of link physics,
:func:`siftopt.model.physics.node_rates` (which builds its fast-fading tables from this module).

Model. Every transmission sees the gain ``g = ḡ·X`` with ``X ~ Exp(1)`` (unit-mean power of a
Rayleigh channel), independent across nodes, directions and layers. Expert selection is decided
from the statistics only; the transmitter learns the realised gain when it transmits. A direction
must deliver ``D`` bits inside a fixed window ``τ_dir`` (s), i.e. at the rate ``R = D/τ_dir``
(bit/s). At full power ``P_max`` it can do so iff ``X ≥ x_th`` with the dimensionless threshold

    x_th = (N0·B / (ḡ·P_max)) · (2^{R/B} − 1),

otherwise it does not transmit at all (outage). Two power modes:

* ``adaptive`` (truncated channel inversion): when ``X ≥ x_th`` transmit the whole window at the
  least power that delivers ``R``, ``P = P_max·x_th/X``; energy ``τ_dir·P_max·x_th/X``.
  Expectation ``τ_dir·P_max·x_th·E1(x_th)``.
* ``fixed``: when ``X ≥ x_th`` transmit at ``P_max`` for ``D / (B·log2(1 + P_max ḡ X/(N0 B)))``
  seconds (≤ ``τ_dir``). Expectation by numerical integration, relative accuracy 1e-10.

The node computes and answers only if its uplink arrived: ``Ē = ω↑Ē↑ + e^{−x↑}(ω↓Ē↓ + κn)``.

Units throughout: bits, s, Hz, W, J, W/Hz; gains are linear power gains (dimensionless);
thresholds and ``X`` are dimensionless.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import integrate, special

from siftopt.model.instance import Instance, Node

__all__ = [
    "FIXED_INTEGRAL_RTOL",
    "PowerControl",
    "RayleighNodeParams",
    "RayleighNodeTable",
    "direction_threshold",
    "expected_energy_adaptive",
    "expected_energy_fixed",
    "fixed_power_integral",
    "node_params",
    "node_table",
    "rayleigh_node_table",
    "table_from_params",
    "thresholds",
    "window_split",
]

PowerControl = Literal["fixed", "adaptive"]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_LN2 = math.log(2.0)

#: Relative accuracy guaranteed by :func:`fixed_power_integral` (and hence by
#: :func:`expected_energy_fixed`) whenever the result is a normal float (``x_th`` below ≈ 700).
FIXED_INTEGRAL_RTOL = 1e-10

# The fixed-power integral is truncated at x = x_th + _TAIL_SPAN. The neglected tail relative to
# the integral is at most e^{-_TAIL_SPAN}/(1 − e^{-1}) ≈ 6.7e-18 (see docs/fading.md).
_TAIL_SPAN = 40.0
# quad's own target: two orders of magnitude tighter than the promise.
_QUAD_EPSREL = 1e-12


# --------------------------------------------------------------------------------------------
# Per-direction quantities
# --------------------------------------------------------------------------------------------


def thresholds(
    bits: npt.ArrayLike,
    window_s: npt.ArrayLike,
    bandwidth_hz: float,
    mean_gain: float,
    power_max_w: float,
    noise_psd_w_per_hz: float,
) -> FloatArray:
    """Vectorised :func:`direction_threshold` (broadcasts ``bits`` against ``window_s``).

    Returns the dimensionless thresholds ``x_th``: 0 where ``bits == 0``; ``inf`` where
    ``bits > 0`` and the window is empty (``window_s <= 0``) or ``2^{R/B}`` overflows a double.
    """
    bits_a, window_a = np.broadcast_arrays(
        np.asarray(bits, dtype=np.float64), np.asarray(window_s, dtype=np.float64)
    )
    inv_snr = noise_psd_w_per_hz * bandwidth_hz / (mean_gain * power_max_w)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        spectral_efficiency = bits_a / (window_a * bandwidth_hz)  # R/B in bit/s/Hz
        x = inv_snr * np.expm1(_LN2 * spectral_efficiency)
    x = np.where(window_a > 0, x, np.inf)
    x = np.where(bits_a == 0, 0.0, x)
    return np.asarray(x, dtype=np.float64)


def direction_threshold(
    bits: float,
    window_s: float,
    bandwidth_hz: float,
    mean_gain: float,
    power_max_w: float,
    noise_psd_w_per_hz: float,
) -> float:
    """Outage threshold ``x_th = (N0 B/(ḡ P_max))·(2^{R/B} − 1)`` with ``R = bits/window_s``.

    The direction delivers its payload iff the realised fading ``X ≥ x_th``, which happens with
    probability ``exp(−x_th)``.

    Args:
        bits: payload ``D`` of the direction (bits); ``0`` gives ``x_th = 0``.
        window_s: window ``τ_dir`` (s); ``<= 0`` with a nonzero payload gives ``inf``.
        bandwidth_hz: band ``B`` (Hz).
        mean_gain: mean linear power gain ``ḡ`` (dimensionless).
        power_max_w: power cap ``P_max`` (W).
        noise_psd_w_per_hz: ``N0`` (W/Hz).

    Returns:
        The dimensionless threshold, ``inf`` when ``2^{R/B}`` overflows (a certain outage).
    """
    return float(
        thresholds(bits, window_s, bandwidth_hz, mean_gain, power_max_w, noise_psd_w_per_hz)
    )


def _adaptive_from_threshold(threshold: float, window_s: float, power_max_w: float) -> float:
    """``τ·P_max·x_th·E1(x_th)`` (J) with the limits ``x_th → 0`` and ``x_th = inf`` set to 0."""
    if threshold <= 0.0 or math.isinf(threshold):
        return 0.0
    return window_s * power_max_w * threshold * float(special.exp1(threshold))


def expected_energy_adaptive(
    bits: float,
    window_s: float,
    bandwidth_hz: float,
    mean_gain: float,
    power_max_w: float,
    noise_psd_w_per_hz: float,
) -> float:
    """Expected energy (J) of one direction under truncated channel inversion.

    ``E[τ·P_max·(x_th/X)·1{X ≥ x_th}] = τ·P_max·x_th·E1(x_th)`` with ``E1`` the exponential
    integral (``scipy.special.exp1``). The limit ``x_th → 0`` (no payload) is 0 because
    ``x·E1(x) ~ x·ln(1/x) → 0``; a certain outage (``x_th = inf``) costs nothing either. Accuracy
    is that of ``exp1`` (relative ~1e-15).

    Args: as :func:`direction_threshold`.
    """
    x = direction_threshold(
        bits, window_s, bandwidth_hz, mean_gain, power_max_w, noise_psd_w_per_hz
    )
    return _adaptive_from_threshold(x, window_s, power_max_w)


def fixed_power_integral(threshold: float, mean_snr: float) -> float:
    """``I(x_th, a) = ∫_{x_th}^∞ e^{−x} / log2(1 + a·x) dx`` (dimensionless), ``x_th > 0``.

    Computed as ``e^{−x_th}·∫_0^{s_max} h(s) ds`` after the substitution ``x = x_th·e^s``, with
    ``h(s) = x·e^{−(x − x_th)}·ln2 / log1p(a·x)``. The substitution removes the ``1/x`` behaviour
    of the integrand near ``x = 0`` (``h → ln2/a`` as ``a·x → 0``) so that very small thresholds
    cost nothing extra, and the upper limit ``x = x_th + 40`` drops a tail below 7e-18 of the
    total. Relative accuracy: :data:`FIXED_INTEGRAL_RTOL` (1e-10), checked against quad's error
    estimate; the result underflows to 0 for ``x_th`` beyond ≈ 745.

    Args:
        threshold: ``x_th > 0`` (dimensionless); ``inf`` gives 0.
        mean_snr: ``a = P_max·ḡ/(N0·B) > 0`` (dimensionless).

    Raises:
        ValueError: for ``threshold <= 0`` (the integral diverges) or ``mean_snr <= 0``.
        ArithmeticError: if quad cannot certify the accuracy (never observed).
    """
    if not threshold > 0.0:
        raise ValueError(f"threshold must be > 0 (the integral diverges at 0), got {threshold}")
    if not mean_snr > 0.0:
        raise ValueError(f"mean_snr must be > 0, got {mean_snr}")
    if math.isinf(threshold):
        return 0.0
    scale = math.exp(-threshold)
    if scale == 0.0:
        return 0.0

    def h(s: float) -> float:
        x = threshold * math.exp(s)
        return x * math.exp(threshold - x) * _LN2 / math.log1p(mean_snr * x)

    s_max = math.log1p(_TAIL_SPAN / threshold)
    # Kinks of the integrand's shape in s: where x = 1 (e^{-x} starts to bite) and where
    # a·x = 1 (log1p leaves its linear regime).
    points = sorted(
        {s for s in (-math.log(threshold), -math.log(mean_snr * threshold)) if 0.0 < s < s_max}
    )
    value, abserr = integrate.quad(
        h, 0.0, s_max, points=points or None, epsabs=0.0, epsrel=_QUAD_EPSREL, limit=500
    )
    if not abserr <= FIXED_INTEGRAL_RTOL * abs(value):
        raise ArithmeticError(
            f"fixed-power integral not certified: x_th={threshold}, a={mean_snr}, "
            f"value={value}, error estimate={abserr}"
        )
    return scale * value


def _fixed_from_threshold(
    threshold: float, bits: float, bandwidth_hz: float, power_max_w: float, mean_snr: float
) -> float:
    """``P_max·(D/B)·I(x_th, a)`` (J), 0 when there is no payload or a certain outage."""
    if bits == 0.0 or math.isinf(threshold):
        return 0.0
    return power_max_w * bits / bandwidth_hz * fixed_power_integral(threshold, mean_snr)


def expected_energy_fixed(
    bits: float,
    window_s: float,
    bandwidth_hz: float,
    mean_gain: float,
    power_max_w: float,
    noise_psd_w_per_hz: float,
) -> float:
    """Expected energy (J) of one direction at fixed (full) power.

    ``P_max·E[(D / (B·log2(1 + P_max ḡ X/(N0 B))))·1{X ≥ x_th}]`` with ``X ~ Exp(1)``: the
    transmitter sends at ``P_max`` for exactly the air time the realised channel needs (at most
    ``τ_dir``) and stays silent in outage. Relative accuracy 1e-10 (see
    :func:`fixed_power_integral`). For ``D > 0`` the threshold is positive, so the integrand is
    bounded; ``D = 0`` or a certain outage give 0.

    Args: as :func:`direction_threshold`.
    """
    x = direction_threshold(
        bits, window_s, bandwidth_hz, mean_gain, power_max_w, noise_psd_w_per_hz
    )
    snr = power_max_w * mean_gain / (noise_psd_w_per_hz * bandwidth_hz)
    return _fixed_from_threshold(x, bits, bandwidth_hz, power_max_w, snr)


# --------------------------------------------------------------------------------------------
# Node level
# --------------------------------------------------------------------------------------------


def window_split(
    window_s: npt.ArrayLike, rate_up_bps: float, rate_down_bps: float
) -> tuple[FloatArray, FloatArray]:
    """Split a window ``τ`` as ``τ↑ : τ↓ = 1/r̄↑ : 1/r̄↓`` (s); returns ``(τ↑, τ↓)``.

    ``τ↑ = τ·r̄↓/(r̄↑ + r̄↓)`` and ``τ↓ = τ·r̄↑/(r̄↑ + r̄↓)``: the shares of the air time that
    equal payloads need at the full-power rates at the mean gains.
    """
    tau = np.asarray(window_s, dtype=np.float64)
    total = rate_up_bps + rate_down_bps
    return tau * (rate_down_bps / total), tau * (rate_up_bps / total)


@dataclass(frozen=True)
class RayleighNodeParams:
    """The link and compute parameters of one remote node (SI units).

    Attributes:
        bits_per_token: payload per token per direction ``S`` (bits).
        n_max: largest load considered (tokens), normally the batch size L.
        latency_s: per-layer latency budget ``T`` (s).
        compute_s_per_token: ``c`` (s/token).
        compute_j_per_token: ``κ`` (J/token).
        bandwidth_hz: ``B`` (Hz).
        gain_up_mean, gain_down_mean: mean linear power gains ``ḡ↑, ḡ↓``.
        power_up_w, power_down_w: power caps ``P↑, P↓`` (W).
        noise_psd_w_per_hz: ``N0`` (W/Hz).
        rate_up_bps, rate_down_bps: full-power rates at the mean gains ``r̄↑, r̄↓`` (bit/s), as
            :func:`siftopt.model.physics.node_rates` computes them; they fix the window split.
        weight_up, weight_down: energy weights ``ω↑, ω↓`` (dimensionless).
        power_control: ``"fixed"`` or ``"adaptive"``.
        outage_max: chance-constraint level in (0, 1).
    """

    bits_per_token: float
    n_max: int
    latency_s: float
    compute_s_per_token: float
    compute_j_per_token: float
    bandwidth_hz: float
    gain_up_mean: float
    gain_down_mean: float
    power_up_w: float
    power_down_w: float
    noise_psd_w_per_hz: float
    rate_up_bps: float
    rate_down_bps: float
    weight_up: float
    weight_down: float
    power_control: PowerControl
    outage_max: float

    def __post_init__(self) -> None:
        positive = (
            "bits_per_token",
            "latency_s",
            "bandwidth_hz",
            "gain_up_mean",
            "gain_down_mean",
            "power_up_w",
            "power_down_w",
            "noise_psd_w_per_hz",
            "rate_up_bps",
            "rate_down_bps",
        )
        nonnegative = ("compute_s_per_token", "compute_j_per_token", "weight_up", "weight_down")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value}")
        for name in nonnegative:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if isinstance(self.n_max, bool) or int(self.n_max) != self.n_max or self.n_max < 0:
            raise ValueError(f"n_max must be an integer >= 0, got {self.n_max}")
        if self.power_control not in ("fixed", "adaptive"):
            raise ValueError(
                f"power_control must be 'fixed' or 'adaptive', got {self.power_control!r}"
            )
        if not 0.0 < self.outage_max < 1.0:
            raise ValueError(f"outage_max must be in (0, 1), got {self.outage_max}")

    @property
    def snr_up(self) -> float:
        """Mean uplink SNR at full power ``P↑ḡ↑/(N0 B)`` (dimensionless)."""
        return self.power_up_w * self.gain_up_mean / (self.noise_psd_w_per_hz * self.bandwidth_hz)

    @property
    def snr_down(self) -> float:
        """Mean downlink SNR at full power ``P↓ḡ↓/(N0 B)`` (dimensionless)."""
        return (
            self.power_down_w * self.gain_down_mean / (self.noise_psd_w_per_hz * self.bandwidth_hz)
        )


def _readonly(a: npt.ArrayLike) -> FloatArray:
    out = np.array(a, dtype=np.float64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class RayleighNodeTable:
    """Expected-energy and outage table of one node for loads ``n = 0..cap``.

    Every array has length ``cap + 1`` and is indexed by the load n (tokens). Loads above
    ``cap`` are not allowed (outage above ``outage_max`` or ``c·n ≥ T``).

    Attributes:
        energy_j: expected node energy ``Ē(n) = ω↑Ē↑ + e^{−x↑}(ω↓Ē↓ + κn)`` (J); ``Ē(0) = 0``.
            Need not be convex nor monotone in n (:func:`siftopt.model.physics.is_convex`).
        outage: ``p(n) = 1 − e^{−x↑ − x↓}``; ``p(0) = 0``; strictly increasing for n ≥ 1.
        window_up_s, window_down_s: the fixed windows ``τ↑(n), τ↓(n)`` (s), summing to
            ``T − c·n``.
        threshold_up, threshold_down: ``x_th↑(n), x_th↓(n)`` (dimensionless).
        cap: the largest allowed load; it replaces the slow-fading ``n̂``.
        params: the parameters the table was built from (the simulator draws with them).
    """

    energy_j: FloatArray
    outage: FloatArray
    window_up_s: FloatArray
    window_down_s: FloatArray
    threshold_up: FloatArray
    threshold_down: FloatArray
    cap: int
    params: RayleighNodeParams


def _outage(threshold_up: FloatArray, threshold_down: FloatArray) -> FloatArray:
    """``1 − e^{−(x↑ + x↓)}`` computed without cancellation for small thresholds."""
    return -np.expm1(-(threshold_up + threshold_down))


def _cap(allowed: BoolArray) -> int:
    """Largest n with ``allowed[0..n]`` all true (``allowed[0]`` must be true)."""
    blocked = np.flatnonzero(~allowed)
    return int(blocked[0] - 1) if blocked.size else int(allowed.size - 1)


def _expected_direction_energies(
    power_control: PowerControl,
    bits: FloatArray,
    window_s: FloatArray,
    threshold: FloatArray,
    bandwidth_hz: float,
    power_max_w: float,
    mean_snr: float,
) -> FloatArray:
    """Expected energies (J) of one direction for a vector of loads (0 where ``bits == 0``)."""
    out = np.zeros(bits.size)
    for k in range(bits.size):
        if bits[k] == 0.0:
            continue
        if power_control == "adaptive":
            out[k] = _adaptive_from_threshold(float(threshold[k]), float(window_s[k]), power_max_w)
        else:
            out[k] = _fixed_from_threshold(
                float(threshold[k]), float(bits[k]), bandwidth_hz, power_max_w, mean_snr
            )
    return out


@functools.lru_cache(maxsize=128)
def table_from_params(params: RayleighNodeParams) -> RayleighNodeTable:
    """:func:`rayleigh_node_table` from a :class:`RayleighNodeParams`.

    The one place a Rayleigh table is computed. Cached on the (hashable, frozen) parameters
    (128 tables: the nodes of the last few instances, as the instance cache of
    :func:`siftopt.model.physics.energy_tables`); the table is read-only, so those energy
    tables and the simulator share one object.
    """
    loads = np.arange(params.n_max + 1, dtype=np.int64)
    tau = params.latency_s - params.compute_s_per_token * loads
    tau_up, tau_down = window_split(tau, params.rate_up_bps, params.rate_down_bps)
    bits = loads * params.bits_per_token
    x_up = thresholds(
        bits,
        tau_up,
        params.bandwidth_hz,
        params.gain_up_mean,
        params.power_up_w,
        params.noise_psd_w_per_hz,
    )
    x_down = thresholds(
        bits,
        tau_down,
        params.bandwidth_hz,
        params.gain_down_mean,
        params.power_down_w,
        params.noise_psd_w_per_hz,
    )
    outage = _outage(x_up, x_down)
    admissible = tau > 0
    # p(n) is nondecreasing in n: D = nS grows and τ_dir = share·(T − cn) shrinks, so R/B and
    # both thresholds grow (docs/fading.md). Hence `allowed` is a prefix of the loads and the
    # cap is simply the largest allowed load; both facts are checked, not assumed.
    p_adm = outage[admissible]
    if np.any(np.diff(p_adm) < 0):
        raise AssertionError(f"outage not monotone in the load: {p_adm}")
    allowed = admissible & (outage <= params.outage_max)
    cap = _cap(allowed)
    if np.any(allowed[cap + 1 :]):
        raise AssertionError("allowed loads do not form a prefix 0..cap")

    kept = slice(0, cap + 1)
    p = params
    e_up = _expected_direction_energies(
        p.power_control,
        bits[kept],
        tau_up[kept],
        x_up[kept],
        p.bandwidth_hz,
        p.power_up_w,
        p.snr_up,
    )
    e_down = _expected_direction_energies(
        p.power_control,
        bits[kept],
        tau_down[kept],
        x_down[kept],
        p.bandwidth_hz,
        p.power_down_w,
        p.snr_down,
    )
    # Ē = ω↑Ē↑ + e^{−x↑}(ω↓Ē↓ + κn): the node computes and answers only if the uplink arrived.
    arrived = np.exp(-x_up[kept])
    energy = (
        p.weight_up * e_up
        + p.weight_down * arrived * e_down
        + arrived * (p.compute_j_per_token * loads[kept])
    )
    energy[0] = 0.0
    return RayleighNodeTable(
        energy_j=_readonly(energy),
        outage=_readonly(outage[kept]),
        window_up_s=_readonly(tau_up[kept]),
        window_down_s=_readonly(tau_down[kept]),
        threshold_up=_readonly(x_up[kept]),
        threshold_down=_readonly(x_down[kept]),
        cap=cap,
        params=params,
    )


def rayleigh_node_table(
    *,
    bits_per_token: float,
    n_max: int,
    latency_s: float,
    compute_s_per_token: float,
    compute_j_per_token: float,
    bandwidth_hz: float,
    gain_up_mean: float,
    gain_down_mean: float,
    power_up_w: float,
    power_down_w: float,
    noise_psd_w_per_hz: float,
    rate_up_bps: float,
    rate_down_bps: float,
    weight_up: float,
    weight_down: float,
    power_control: str,
    outage_max: float,
) -> RayleighNodeTable:
    """Expected-energy / outage table of one node under Rayleigh fading (MODEL.md §5).

    For every load ``n = 0..n_max`` (tokens): ``τ = T − c·n`` (only ``c·n < T`` is admissible),
    split ``τ↑ : τ↓ = 1/r̄↑ : 1/r̄↓`` with the full-power rates at the mean gains ``r̄`` (given);
    ``D = n·S``; thresholds from :func:`direction_threshold`; ``p(n) = 1 − e^{−x↑−x↓}``; and
    ``Ē(n) = ω↑Ē↑ + e^{−x↑}(ω↓Ē↓ + κn)`` (the node computes and answers only if the uplink
    arrived). The cap is
    the largest n with every load ``0..n`` allowed (``p ≤ outage_max`` and ``c·n < T``); as ``p``
    is monotone in n (checked) this is the largest allowed load.

    Args: see :class:`RayleighNodeParams` (SI units).

    Returns:
        A :class:`RayleighNodeTable` with arrays of length ``cap + 1``.

    Raises:
        ValueError: on out-of-range parameters or an unknown ``power_control``.
    """
    params = RayleighNodeParams(
        bits_per_token=bits_per_token,
        n_max=n_max,
        latency_s=latency_s,
        compute_s_per_token=compute_s_per_token,
        compute_j_per_token=compute_j_per_token,
        bandwidth_hz=bandwidth_hz,
        gain_up_mean=gain_up_mean,
        gain_down_mean=gain_down_mean,
        power_up_w=power_up_w,
        power_down_w=power_down_w,
        noise_psd_w_per_hz=noise_psd_w_per_hz,
        rate_up_bps=rate_up_bps,
        rate_down_bps=rate_down_bps,
        weight_up=weight_up,
        weight_down=weight_down,
        power_control=power_control,  # type: ignore[arg-type]  # validated in __post_init__
        outage_max=outage_max,
    )
    return table_from_params(params)


def node_params(
    inst: Instance, node: Node, rate_up_bps: float, rate_down_bps: float
) -> RayleighNodeParams:
    """The :class:`RayleighNodeParams` of a remote node of ``inst`` (its gains are mean gains).

    ``rate_up_bps, rate_down_bps`` are the node's full-power rates at the mean gains, from
    :func:`siftopt.model.physics.node_rates`.
    """
    return RayleighNodeParams(
        bits_per_token=float(inst.payload_bits),
        n_max=inst.num_tokens,
        latency_s=inst.latency_s,
        compute_s_per_token=node.compute_s_per_token,
        compute_j_per_token=node.compute_j_per_token,
        bandwidth_hz=node.bandwidth_hz,
        gain_up_mean=node.gain_up,
        gain_down_mean=node.gain_down,
        power_up_w=node.power_up_w,
        power_down_w=node.power_down_w,
        noise_psd_w_per_hz=inst.noise_psd_w_per_hz,
        rate_up_bps=rate_up_bps,
        rate_down_bps=rate_down_bps,
        weight_up=inst.energy_weight_up,
        weight_down=inst.energy_weight_down,
        power_control=inst.power_control,  # type: ignore[arg-type]  # validated in __post_init__
        outage_max=float(inst.outage_max or 0.0),
    )


def node_table(
    inst: Instance, node: Node, rate_up_bps: float, rate_down_bps: float
) -> RayleighNodeTable:
    """The :class:`RayleighNodeTable` of a remote node of ``inst``.

    What :func:`siftopt.model.physics.energy_tables` builds its fast-fading tables from and what
    the simulator draws with: one computation (cached), one object.
    """
    return table_from_params(node_params(inst, node, rate_up_bps, rate_down_bps))
