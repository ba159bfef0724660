"""Bayesian biased matrix factorization by Gibbs sampling (Rendle et al. 2019; docs/design.md, "The model").

The rows ``[p_u, b_u]`` (and ``[q_i, b_i]``) of a side share a per-dimension Normal-Gamma prior; ratings
are ``N(r̂, 1/α)``. A sweep draws every user's row jointly given the movies, then every movie's, then ``μ``,
``α`` and the hyperparameters; with ``implicit``, each side's implicit rows after its own
(:mod:`embedder.implicit`). The posterior mean of ``P Qᵀ`` is kept compressed by :class:`LowRankSum`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from embedder.distributed import Group
from embedder.implicit import ImplicitRows
from embedder.model import rating

DTYPE = torch.float64
STATS_DTYPE = torch.float32
"""The ratings and the sparse sums over them, in half the memory; the solves are float64."""
BLOCK_ROWS = 16_384
"""Rows of a side drawn together: their (d+1) x (d+1) precisions are a sweep's largest temporaries."""
PRIOR_SHAPE, PRIOR_RATE, PRIOR_MEAN_WEIGHT = 1.0, 1.0, 1.0
"""a₀, b₀ of the Gamma hyperpriors on each λ_j and on α; γ₀: the prior on m_j is N(0, 1/(γ₀ λ_j))."""
IMPLICIT_SIDES = {"none": (), "users": ("users",), "both": ("users", "movies")}
"""The sides whose rows get an implicit part, by ``TrainConfig.implicit`` ('auto' resolved)."""


class _Side:
    """This process's shard of one side's rows, in CSR form over their ratings."""

    def __init__(self, rows, others, values, n_rows, n_others, group, device):
        self.first, end = group.shard(n_rows)
        if group.size > 1:
            mine = (rows >= self.first) & (rows < end)
            rows, others, values = rows[mine], others[mine], values[mine]
        self.n_rows, self.n_others = end - self.first, n_others
        order = torch.sort(torch.as_tensor(rows), stable=True).indices.numpy()
        index = np.int32 if max(len(rows), n_others) < 2**31 else np.int64
        crow = np.zeros(self.n_rows + 1, dtype=index)
        np.cumsum(np.bincount(rows - self.first, minlength=self.n_rows), out=crow[1:])
        self.crow = torch.as_tensor(crow, device=device)
        self.others = torch.as_tensor(others.astype(index, copy=False)[order], device=device)
        self.values = torch.as_tensor(values[order], dtype=STATS_DTYPE, device=device)
        self.ones = torch.ones(len(rows), dtype=STATS_DTYPE, device=device)

    def blocks(self):
        """``(start, end)`` of consecutive blocks of :data:`BLOCK_ROWS` local rows."""
        for start in range(0, self.n_rows, BLOCK_ROWS):
            yield start, min(start + BLOCK_ROWS, self.n_rows)

    def block(self, start: int, end: int, values: torch.Tensor) -> torch.Tensor:
        """Local rows ``start:end`` as a sparse CSR matrix with ``values`` (in CSR order)."""
        crow = self.crow[start : end + 1]
        low, high = int(crow[0]), int(crow[-1])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            return torch.sparse_csr_tensor(
                crow - low,
                self.others[low:high],
                values[low:high],
                (end - start, self.n_others),
                check_invariants=False,
            )


def _triangle_to_square(k: int) -> torch.Tensor:
    """For each entry (i, j) of a symmetric k x k matrix, its column in the packed
    triangle whose block j lists the entries (j, j), (j, j+1), …, (j, k-1)."""
    start = np.concatenate([[0], np.cumsum(np.arange(k, 0, -1))[:-1]])
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    low, high = np.minimum(i, j), np.maximum(i, j)
    return torch.as_tensor((start[low] + high - low).reshape(-1))


class GibbsSampler:
    """Block Gibbs sampler for biased MF with per-dimension Normal-Gamma priors.

    Conditions on the ``ratings`` ``(users, movies, values)`` (row numbers; float32) with ``dim`` factors per
    sample, started ``N(0, init_std²)``; same ``seed`` and process count, same samples. ``group``: the
    processes sharing the chain (:mod:`embedder.distributed`); ``implicit``: a key of :data:`IMPLICIT_SIDES`.
    :attr:`X`, :attr:`Y` hold the own rows, :attr:`Xc`, :attr:`Yc` the composite rows that predict.
    """

    def __init__(
        self, n_users, n_movies, dim, ratings, init_std, seed, device="cpu", group=None, implicit="none"
    ):
        users, movies, values = ratings
        self.dim, self.device, self.group = dim, torch.device(device), group or Group()
        # Rows are drawn by torch on the ratings' device, the few hyperparameters by numpy (its Gamma
        # sampler takes a seed). Initial rows and hyperparameters agree in all processes; noise is each one's.
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.users = _Side(users, movies, values, n_users, n_movies, self.group, self.device)
        self.movies = _Side(movies, users, values, n_movies, n_users, self.group, self.device)
        # Users and movies without ratings are exported as zero rows, not as their draws from the prior.
        self.user_rated = torch.as_tensor(np.bincount(users, minlength=n_users) > 0, device=self.device)
        self.movie_rated = torch.as_tensor(np.bincount(movies, minlength=n_movies) > 0, device=self.device)
        # Rows are [p_u, b_u] and [q_i, b_i]: the bias is one more coordinate, starting at zero.
        self.X = torch.nn.functional.pad(self._normal(n_users, dim) * init_std, (0, 1))
        self.Y = torch.nn.functional.pad(self._normal(n_movies, dim) * init_std, (0, 1))
        if self.group.rank:
            own_seed = np.random.SeedSequence([seed, self.group.rank]).generate_state(1)[0]
            self.generator.manual_seed(int(own_seed))
        self.mu = float(values.mean(dtype=np.float64))
        self.alpha = 1.0
        self.ratings = self.users.values
        """This process's ratings, in the user side's CSR order."""
        self.residuals = self.ratings - self.mu
        """``r - r̂`` of the current sample at :attr:`ratings`."""
        self._square = _triangle_to_square(dim + 1).to(self.device)
        pattern = lambda side: side.block(0, side.n_rows, side.ones)
        zeros = lambda side: self.X.new_zeros(side.n_others, dim + 1)
        self.implicit = {
            name: ImplicitRows(pattern(side), pattern(other), zeros(side), self.group)
            for name, side, other in (("users", self.users, self.movies), ("movies", self.movies, self.users))
            if name in IMPLICIT_SIDES[implicit]
        }
        self.Xc, self.Yc = self.X, self.Y

    def _normal(self, *shape: int, dtype: torch.dtype = DTYPE) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=dtype, device=self.device)

    def predict(self, users: torch.Tensor, movies: torch.Tensor) -> torch.Tensor:
        """Raw predictions of the current sample for paired rows, as exported (unrated rows zeroed)."""
        x = self.Xc[users] * self.user_rated[users].unsqueeze(1).to(DTYPE)
        y = self.Yc[movies] * self.movie_rated[movies].unsqueeze(1).to(DTYPE)
        d = self.dim
        return rating(self.mu, x[:, d], y[:, d], x[:, :d], y[:, :d])

    def _interactions(self) -> torch.Tensor:
        """``b_u + b_i + p_u·q_i`` at :attr:`ratings`: ``[p_u, b_u, 1]·[q_i, 1, b_i]`` sampled there."""
        d, side = self.dim, self.users
        own = self.Xc[side.first : side.first + side.n_rows]
        xa = torch.cat([own, own.new_ones(len(own), 1)], 1).to(STATS_DTYPE)
        ya = torch.cat([self.Yc[:, :d], self.Yc.new_ones(len(self.Yc), 1), self.Yc[:, d:]], 1)
        ya = ya.to(STATS_DTYPE).mT.contiguous()
        out = torch.empty(len(side.values), dtype=STATS_DTYPE, device=self.device)
        for start, end in side.blocks():
            pattern = side.block(start, end, side.ones)
            product = torch.sparse.sampled_addmm(pattern, xa[start:end], ya, beta=0.0)
            out[int(side.crow[start]) : int(side.crow[end])] = product.values()
        return out

    def _prior(self, rows: torch.Tensor, draw: bool, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, λ) per dimension: drawn from their Normal-Gamma posterior given ``rows``, or with ``draw``
        False the warm-up's fixed ridge prior ``N(0, 1/(α ridge))``."""
        if not draw:
            return rows.new_zeros(self.dim + 1), rows.new_full((self.dim + 1,), self.alpha * ridge)
        n, mean, w = rows.shape[0], rows.mean(0).cpu().numpy(), PRIOR_MEAN_WEIGHT
        spread = ((rows - rows.mean(0)) ** 2).sum(0).cpu().numpy() + w * n / (w + n) * mean**2
        lam = self.rng.gamma(PRIOR_SHAPE + (n + 1) / 2, 1.0 / (PRIOR_RATE + spread / 2))
        m = self.rng.normal(n * mean / (w + n), 1.0 / np.sqrt((w + n) * lam))
        return torch.as_tensor(m, device=self.device), torch.as_tensor(lam, device=self.device)

    def _draw_rows(self, side: _Side, own: torch.Tensor, other: torch.Tensor, draw, ridge, offset=None):
        """Draw this process's rows of ``own`` given the composite ``other`` (with ``draw`` False, their mode
        under the ridge prior). ``offset``: the implicit part of the composite rows; with it, also return what
        :meth:`_draw_implicit` needs: per row ``Σ z zᵀ``, ``Σ (r - μ - b) z`` and (drawing) ``Σ ε z``."""
        d, k = self.dim, self.dim + 1
        m, lam = self._prior(own, draw, ridge)
        # A user's row is a linear regression of its ratings less μ and the movies' biases on the features
        # z_i = [q_i, 1] (for movies, swap the roles): it needs Σ z zᵀ (its triangle: z_j·z[j:] for each j)
        # and Σ (r - μ - b_i) z = Σ r z - Σ (μ + b_i) z, sparse products of the rating pattern.
        z = torch.cat([other[:, :d], other.new_ones(len(other), 1)], 1)
        shifted = (z * (self.mu + other[:, d:])).to(STATS_DTYPE)
        z = z.to(STATS_DTYPE)
        columns = torch.cat([z[:, j : j + 1] * z[:, j:] for j in range(k)] + [shifted], 1)
        n_triangle = columns.shape[1] - k
        keep = offset is not None
        if keep and draw:
            noise = self._normal(len(side.values), dtype=STATS_DTYPE)
        drawn, grams, targets, noise_sums = [], [], [], []
        for start, end in side.blocks():
            sums = side.block(start, end, side.ones) @ columns
            target = (side.block(start, end, side.values) @ z - sums[:, n_triangle:]).to(DTYPE)
            square = torch.gather(sums[:, :n_triangle], 1, self._square.expand(end - start, -1)).to(DTYPE)
            gram = square.reshape(end - start, k, k)
            rhs = target
            if keep:
                rhs = target - torch.bmm(gram, offset[start:end].unsqueeze(2)).squeeze(2)
                grams.append(gram)
                targets.append(target)
                if draw:
                    noise_sums.append((side.block(start, end, noise) @ z).to(DTYPE))
            precision = gram * self.alpha
            precision.diagonal(dim1=1, dim2=2).add_(lam)
            # With precision = L Lᵀ, the draw L⁻ᵀ (L⁻¹ rhs + ε) has mean precision⁻¹ rhs
            # and covariance L⁻ᵀ L⁻¹ = precision⁻¹: two triangular solves in all.
            chol = torch.linalg.cholesky(precision)
            half = torch.linalg.solve_triangular(chol, (self.alpha * rhs + lam * m).unsqueeze(2), upper=False)
            if draw:
                half += self._normal(end - start, k, 1)
            drawn.append(torch.linalg.solve_triangular(chol.mT, half, upper=True).squeeze(2))
        joined = lambda parts, *shape: torch.cat(parts) if parts else own.new_zeros((0, *shape))
        stats = (joined(grams, k, k), joined(targets, k), joined(noise_sums, k) if draw else None)
        return joined(drawn, k), stats if keep else None

    def warm_up(self, ridge: float) -> None:
        """One alternating-least-squares pass (ridge ``Σ (r - r̂)² + ridge ‖row‖²``), μ and α at their modes:
        a chain started near zero moves slowly on large data, so a few of these put it near the mode first."""
        self.sweep(draw=False, ridge=ridge)

    def sweep(self, draw: bool = True, ridge: float = 0.0) -> None:
        """One pass: users, movies, μ, α (hyperparameters drawn with their side); ``draw`` False: warm-up."""
        self.X, self.Xc = self._update_side("users", self.users, self.X, self.Xc, self.Yc, draw, ridge)
        self.Y, self.Yc = self._update_side("movies", self.movies, self.Y, self.Yc, self.Xc, draw, ridge)
        # μ and α from two sums over the ratings less the rest of the model, d = r - (b_u + b_i + p·q).
        rest = self.ratings - self._interactions()
        sums = (rest.sum(dtype=torch.float64), rest.square().sum(dtype=torch.float64))
        n, total, squares = self.group.sum(len(rest), *sums, device=self.device)
        shift = total / n
        self.mu = float(self.rng.normal(shift, 1.0 / math.sqrt(self.alpha * n))) if draw else shift
        self.residuals = rest.sub_(self.mu)
        sse = max(squares - 2 * self.mu * total + n * self.mu**2, 0.0)
        shape, rate = PRIOR_SHAPE + n / 2, PRIOR_RATE + sse / 2
        self.alpha = float(self.rng.gamma(shape, 1.0 / rate)) if draw else shape / rate

    def _update_side(self, name, side, own, composite, other, draw, ridge):
        """New own rows of one side, then its implicit rows (if it has them): ``(own, composite)``."""
        implicit = self.implicit.get(name)
        mine = slice(side.first, side.first + side.n_rows)
        offset = None if implicit is None else composite[mine] - own[mine]
        drawn, stats = self._draw_rows(side, own, other, draw, ridge, offset)
        own = self.group.gather(drawn, len(own))
        if implicit is None:
            return own, own
        self._draw_implicit(implicit, drawn, stats, draw, ridge)
        return own, own + implicit.contribution()

    def _draw_implicit(self, implicit: ImplicitRows, drawn: torch.Tensor, stats, draw: bool, ridge: float):
        """Draw a side's implicit rows given its own rows ``drawn`` and :meth:`_draw_rows`'s ``stats``."""
        gram, target, noise_sums = stats
        # Σ_i e_ui z_i with e the ratings less all but the implicit part: Σ (r - μ - b_i) z - G x.
        residual_sums = target - torch.bmm(gram, drawn.unsqueeze(2)).squeeze(2)
        m, lam = self._prior(implicit.rows, draw, ridge)
        noise = None
        if draw:
            n = len(implicit.rows)
            first, end = self.group.shard(n)
            noise = self.group.gather(self._normal(end - first, self.dim + 1), n)
        implicit.draw(gram, residual_sums, noise_sums, self.alpha, m, lam, noise)

    def training_rmse(self) -> float:
        """RMSE of the current sample at all training ratings (every process's)."""
        squares = self.residuals.square().sum(dtype=torch.float64)
        n, total = self.group.sum(len(self.residuals), squares, device=self.device)
        return math.sqrt(total / n)

    @property
    def implicit_user_rows(self) -> torch.Tensor | None:
        """The user side's implicit rows ``[y_j, c_j]`` (one per movie), or None without them."""
        rows = self.implicit.get("users")
        return None if rows is None else rows.rows

    @property
    def sample(self) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The current draw: (μ, b_u, b_i, P, Q), from the composite rows."""
        d = self.dim
        return self.mu, self.Xc[:, d], self.Yc[:, d], self.Xc[:, :d], self.Yc[:, :d]


def _range_basis(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, R)`` with ``M W`` an orthonormal basis of M's numerical range and ``M ≈ (M W) R``, from the
    small Gram matrix ``MᵀM = V E Vᵀ``: ``W = V E^-½``, ``R = E^½ Vᵀ``, dropping directions below rounding."""
    values, vectors = torch.linalg.eigh(M.mT @ M)
    kept = values > values[-1].clamp(min=0) * len(values) * torch.finfo(M.dtype).eps
    root = values[kept].sqrt()
    vectors = vectors[:, kept]
    return vectors / root, root.unsqueeze(1) * vectors.mT


class LowRankSum:
    """A running sum of products ``Σ A_s B_sᵀ`` kept as one pair of factors, compressed to its best
    rank-``keep`` approximation whenever it is wider than ``cap`` columns, so memory stays bounded."""

    def __init__(self, keep: int, cap: int):
        self.keep, self.cap = keep, cap
        self.A: torch.Tensor | None = None
        self.B: torch.Tensor | None = None

    def add(self, A: torch.Tensor, B: torch.Tensor) -> None:
        """Add ``A Bᵀ`` to the sum."""
        if self.A is None:
            self.A, self.B = A.clone(), B.clone()
        else:
            self.A, self.B = torch.cat([self.A, A], 1), torch.cat([self.B, B], 1)
        if self.A.shape[1] > self.cap:
            self.A, self.B = self.truncated(self.keep)

    def truncated(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Best rank-``rank`` factors ``(U√S, V√S)`` of the sum (fewer if its rank is lower)."""
        wa, ra = _range_basis(self.A)
        wb, rb = _range_basis(self.B)
        # A Bᵀ = Qa (Ra Rbᵀ) Qbᵀ, so the SVD of the small core gives the sum's.
        u, s, vh = torch.linalg.svd(ra @ rb.mT)
        rank = min(rank, len(s))
        root = torch.sqrt(s[:rank])
        return self.A @ (wa @ (u[:, :rank] * root)), self.B @ (wb @ (vh[:rank].mT * root))


class PosteriorMean:
    """Running mean of the sampled μ, biases and ``P Qᵀ``; with ``implicit``, also of the user side's
    implicit rows against the movies (see :meth:`implicit_rows`)."""

    def __init__(self, keep: int, cap: int, implicit: bool = False):
        self.count = 0
        # 0.0 + x is x exactly: the sums start as plain zeros and become tensors on the first draw.
        self.mu = self.user_bias = self.movie_bias = self.implicit_bias = 0.0
        self.products = LowRankSum(keep, cap)
        self.implicit_products = LowRankSum(keep, cap) if implicit else None

    def add(self, sample, implicit_rows: torch.Tensor | None = None) -> None:
        """Fold one draw (μ, b_u, b_i, P, Q) in, with the user side's implicit rows of the same draw."""
        mu, bu, bi, P, Q = sample
        self.count += 1
        self.mu += mu
        self.user_bias = self.user_bias + bu
        self.movie_bias = self.movie_bias + bi
        self.products.add(P, Q)
        if self.implicit_products is not None and implicit_rows is not None:
            d = P.shape[1]
            self.implicit_products.add(implicit_rows[:, :d], Q)
            self.implicit_bias = self.implicit_bias + implicit_rows[:, d]

    def implicit_rows(self, movie_factors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The user side's implicit rows in the basis of the exported movie factors: ``(E, c)`` with ``E q̂_i``
        the least-squares fit of the posterior mean of ``y_j·q_i``, so a newcomer's row can add
        ``|N|^-½ Σ_{j∈N} [E_j, c_j]`` as a trained user's does (:mod:`search.foldin`)."""
        A, B = self.implicit_products.A, self.implicit_products.B
        gram = movie_factors.mT @ movie_factors
        E = A @ (B.mT @ movie_factors) @ torch.linalg.pinv(gram, hermitian=True) / self.count
        return E, self.implicit_bias / self.count

    def factors(self, rank: int) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(μ, b_u, b_i, P, Q) of the mean, with P and Q zero-padded to width ``rank``."""
        P, Q = self.products.truncated(rank)
        scale = 1.0 / math.sqrt(self.count)
        pad = lambda M: torch.nn.functional.pad(M * scale, (0, rank - M.shape[1]))
        count = self.count
        return self.mu / count, self.user_bias / count, self.movie_bias / count, pad(P), pad(Q)


class Convergence:
    """The chain's stopping rule: whether its running posterior mean has converged.

    After S samples the mean's predictions carry Monte Carlo error of variance ``v/S`` per rating, which
    doubling the samples would halve: an RMSE gain of about ``v / (4 S σ)`` at noise level ``σ``. The chain
    stops once that is below ``tolerance``.
    """

    def __init__(self, n: int, device, tolerance: float, min_samples: int, group: Group | None = None):
        self.tolerance, self.min_samples, self.group, self.count = tolerance, min_samples, group or Group(), 0
        self.mean = torch.zeros(n, dtype=torch.float32, device=device)
        self.squares = torch.zeros(n, dtype=torch.float32, device=device)

    def add(self, predictions: torch.Tensor) -> None:
        """Fold one sample's predictions at the training ratings in (Welford's update)."""
        self.count += 1
        delta = predictions - self.mean
        self.mean.add_(delta, alpha=1.0 / self.count)
        self.squares.addcmul_(delta, predictions - self.mean)

    def gain(self, noise_std: float) -> float:
        """Estimated RMSE gain of doubling the samples (inf before two samples)."""
        total = self.squares.sum(dtype=torch.float64)
        n, total = self.group.sum(len(self.squares), total, device=self.mean.device)
        return total / n / (self.count - 1) / (4 * self.count * noise_std) if self.count > 1 else math.inf

    def converged(self, gain: float) -> bool:
        """Whether to stop, given this sweep's :meth:`gain` (computed once: under torchrun a collective)."""
        return self.count >= self.min_samples and gain < self.tolerance

    def rmse(self, ratings: torch.Tensor, scale: tuple[float, float]) -> float:
        """RMSE of the running mean (clipped to ``scale``) at the training ratings."""
        errors = self.mean.clamp(*scale) - ratings
        n, total = self.group.sum(len(errors), errors.square().sum(dtype=torch.float64), device=errors.device)
        return math.sqrt(total / n)
