# The exact likelihood of the censored (Tobit) growth model, patient by patient, and its maximisation; sourced by
# make_censored_reference.R (the reference fits) and benchmarks/censored.py (the R column).
#
# Model: y*_i = X_i beta + Z_i b_i + e_i, b_i ~ N(0, Sigma), e_i ~ N(0, sigma^2 I); a row is right-censored when
# its recorded y is at or above its upper limit (y* >= upper), left-censored when at or below its lower limit.
# Patient i's likelihood, exactly (no quadrature over b around a mode, no Laplace step):
#   L_i = dmvnorm(y_o; mu_o, V_oo) * P(y*_c beyond its limits | y_o),   V = Z Sigma Z' + sigma^2 I,
# the second factor the probability of an orthant of the conditional normal
#   N(m, S) = N(mu_c + V_co V_oo^-1 (y_o - mu_o), V_cc - V_co V_oo^-1 V_oc).
# Mixed directions are handled by sign flips (w = -y* for a right-censored row, w = y* for a left-censored
# one, so that every censored row reads w <= its limit): every probability is a lower orthant P(W <= w), which
# is what the exact algorithms need (TVPACK and Miwa take all lower limits at -Inf).
# The orthant probability by its dimension d (the censored rows of the patient):
#   d = 1: pnorm (log.p); d = 2, 3: mvtnorm::pmvnorm with TVPACK (Genz's bivariate / trivariate algorithms,
#   abseps 1e-14; deterministic, exact to rounding);
#   d >= 4: mvtnorm's Miwa algorithm was measured not accurate enough here (on design_b at the optimum
#   steps = 2048 is 5.3e-5 off in log L, 4096 (its maximum) 1.4e-5 off, against GenzBretz and the identity
#   below, which agree to 1e-7), and GenzBretz is randomised (not smooth in the parameters, so no finite
#   differences). So d >= 4 uses the exact identity of the same probability for S = sigma^2 I + Z_c P^-1 Z_c'
#   (the posterior b | y_o ~ N(bhat, P^-1), P = Z_o'Z_o / sigma^2 + Sigma^-1):
#     P(W <= w) = E_{b | y_o} prod_j Phi(s_j (limit_j - mu_j - z_j'b) / sigma),
#   a q-dimensional integral of a smooth bounded function against the Gaussian posterior of b given the
#   observed rows, by a Gauss-Hermite product rule of N_GH nodes per dimension (non-adaptive in the censored
#   rows: it is not the package's quadrature around the conditional mode). Its accuracy is stated in the
#   JSON (N_GH against 2 N_GH nodes, against GenzBretz and against Miwa with 4096 steps).
suppressPackageStartupMessages({library(mvtnorm); library(numDeriv)})

N_GH_SEARCH <- 60
N_GH <- 120
TVPACK_EPS <- 1e-14

split_patients <- function(d, fixed, random, upper, lower) {
  X <- model.matrix(fixed, d)
  Z <- model.matrix(random, d)
  up <- if (is.character(upper)) d[[upper]] else rep(if (is.null(upper)) Inf else upper, nrow(d))
  lo <- if (is.character(lower)) d[[lower]] else rep(if (is.null(lower)) -Inf else lower, nrow(d))
  right <- d$y >= up
  left <- !right & d$y <= lo
  idx <- split(seq_len(nrow(d)), factor(d$id, levels = unique(d$id)))
  pats <- lapply(idx, function(r) {
    cens <- right[r] | left[r]
    list(X = X[r, , drop = FALSE], Z = Z[r, , drop = FALSE], y = d$y[r], cens = cens,
         sgn = ifelse(right[r], -1, 1), limit = ifelse(right[r], up[r], ifelse(left[r], lo[r], NA)))
  })
  list(pats = pats, X = X, Z = Z, k = ncol(X), q = ncol(Z), names = colnames(X), zn = colnames(Z),
       n_right = sum(right), n_left = sum(left), n = nrow(d),
       max_censored = max(vapply(pats, function(p) sum(p$cens), numeric(1))))
}

unpack <- function(par, k, q) {
  beta <- par[1:k]
  sds <- exp(par[k + 1:q])
  rho <- if (q == 2) tanh(par[k + q + 1]) else 0
  Sigma <- if (q == 2) matrix(c(sds[1]^2, rho * sds[1] * sds[2], rho * sds[1] * sds[2], sds[2]^2), 2) else
    matrix(sds^2, 1)
  sigma <- exp(par[length(par)])
  list(beta = beta, sds = sds, rho = rho, Sigma = Sigma, sigma = sigma)
}

pack <- function(beta, sds, rho, sigma) {
  c(beta, log(sds), if (length(sds) == 2) atanh(rho) else NULL, log(sigma))
}

# Gauss-Hermite rule (Golub-Welsch) as a q-dimensional tensor grid for E over N(0, I_q): nodes x, log weights
.gh_cache <- new.env()
gh_grid <- function(n, q) {
  key <- paste(n, q)
  if (!is.null(.gh_cache[[key]])) return(.gh_cache[[key]])
  J <- matrix(0, n, n)
  off <- sqrt(seq_len(n - 1) / 2)
  J[cbind(1:(n - 1), 2:n)] <- off
  J[cbind(2:n, 1:(n - 1))] <- off
  e <- eigen(J, symmetric = TRUE)
  t <- e$values
  w <- e$vectors[1, ]^2  # sums to 1: weights of E over N(0, 1/2)
  grid <- as.matrix(expand.grid(rep(list(seq_len(n)), q)))
  out <- list(x = matrix(t[grid], ncol = q) * sqrt(2), lw = rowSums(matrix(log(w[grid]), ncol = q)))
  .gh_cache[[key]] <- out
  out
}

logsumexp <- function(v) { mx <- max(v); mx + log(sum(exp(v - mx))) }

# log P(W <= w), W = s * y*_c given y_o, by dimension (see the header). `high` chooses the algorithm for d >= 4:
# "identity" (the default: E_{b | y_o} prod Phi by n_gh Gauss-Hermite nodes per dimension), "miwa" (steps) or
# "genzbretz" (a check: randomised, maxpts 2e6, abseps 1e-9).
log_orthant <- function(w, S, post, high, n_gh, steps) {
  d <- length(w)
  sd <- sqrt(diag(S))
  if (d == 1) return(pnorm(w / sd, log.p = TRUE))
  if (d <= 3 || high %in% c("miwa", "genzbretz")) {
    alg <- if (d <= 3) TVPACK(abseps = TVPACK_EPS) else if (high == "miwa") Miwa(steps = steps) else
      GenzBretz(maxpts = 2e6, abseps = 1e-9, releps = 0)
    return(log(as.numeric(pmvnorm(upper = w / sd, corr = cov2cor(S), algorithm = alg))))
  }
  g <- gh_grid(n_gh, ncol(post$Zc))
  b <- g$x %*% t(post$L)  # nodes x q: b - bhat
  # W_j <= w_j  <=>  s_j e_j <= w_j - s_j z_j'(b - bhat), e_j ~ N(0, sigma^2) given b
  lp <- pnorm((matrix(w, nrow(b), d, byrow = TRUE) - (b %*% t(post$Zc)) * matrix(post$s, nrow(b), d, byrow = TRUE)) /
                post$sigma, log.p = TRUE)
  logsumexp(g$lw + rowSums(lp))
}

loglik_patient <- function(p, th, high = "identity", n_gh = N_GH, steps = 4096) {
  mu <- as.numeric(p$X %*% th$beta)
  V <- p$Z %*% th$Sigma %*% t(p$Z) + diag(th$sigma^2, length(p$y))
  o <- !p$cens
  ce <- p$cens
  ll <- 0
  if (any(o)) {
    Voo <- V[o, o, drop = FALSE]
    ll <- dmvnorm(p$y[o], mu[o], Voo, log = TRUE)
    if (any(ce)) {
      K <- V[ce, o, drop = FALSE] %*% solve(Voo)
      m <- mu[ce] + as.numeric(K %*% (p$y[o] - mu[o]))
      S <- V[ce, ce, drop = FALSE] - K %*% V[o, ce, drop = FALSE]
    }
  } else {
    m <- mu
    S <- V
  }
  if (any(ce)) {
    s <- p$sgn[ce]
    post <- NULL
    if (sum(ce) >= 4 && high == "identity") {
      # posterior of b given the observed rows: b | y_o ~ N(bhat, P^-1); m = mu_c + Z_c bhat
      Zo <- p$Z[o, , drop = FALSE]
      P <- crossprod(Zo) / th$sigma^2 + solve(th$Sigma)
      post <- list(L = t(chol(solve(P))), Zc = p$Z[ce, , drop = FALSE], s = s, sigma = th$sigma)
    }
    # W = s y*, censored region W <= s limit, W - s m ~ N(0, D S D)
    ll <- ll + log_orthant(s * (p$limit[ce] - m), S * outer(s, s), post, high, n_gh, steps)
  }
  ll
}

loglik <- function(par, D, high = "identity", n_gh = N_GH, steps = 4096) {
  th <- unpack(par, D$k, D$q)
  # a trial point of the line search far from the optimum can make V numerically singular: worst value
  ll <- tryCatch(sum(vapply(D$pats, loglik_patient, numeric(1), th = th, high = high, n_gh = n_gh,
                            steps = steps)), error = function(e) -1e100)
  if (is.finite(ll)) ll else -1e100
}

central_grad <- function(f, x, h = 1e-5) {
  vapply(seq_along(x), function(j) {
    e <- replace(numeric(length(x)), j, h)
    (f(x + e) - f(x - e)) / (2 * h)
  }, numeric(1))
}

# Maximum likelihood from `start`: optim BFGS on the search likelihood (N_GH_SEARCH nodes for d >= 4, the
# same pmvnorm otherwise; central-difference gradient, reltol 1e-14), then Newton steps on the final
# likelihood with the numDeriv Hessian (Richardson, r = 2) at the search optimum until the Newton decrement
# g' (-H)^-1 g < 1e-12, then the Hessian again at the final point if it moved by more than 1e-4. polish = FALSE stops after BFGS (no Hessian).
fit_exact <- function(D, start, polish = TRUE) {
  f_search <- function(x) -loglik(x, D, n_gh = N_GH_SEARCH)
  ctrl <- list(maxit = 1000, reltol = 1e-14, fnscale = D$n)
  o1 <- optim(start, f_search, function(x) central_grad(f_search, x), method = "BFGS", control = ctrl)
  o2 <- o1
  f <- function(x) loglik(x, D)
  par <- o2$par
  if (!polish) return(list(par = par, loglik = f(par), optim_counts = o1$counts))
  H <- hessian(f, par, method.args = list(r = 2))
  newton <- list()
  for (it in 1:10) {
    g <- central_grad(f, par)
    step <- -solve(H, g)
    dec <- sum(-g * step)
    newton[[it]] <- list(loglik = f(par), newton_decrement_sq = dec, max_abs_gradient = max(abs(g)))
    if (dec < 1e-12) break
    cand <- par + step
    if (f(cand) < f(par)) break
    par <- cand
  }
  if (max(abs(par - o2$par)) > 1e-4) H <- hessian(f, par, method.args = list(r = 2))  # else the curvature moved by O(1e-4) at most
  list(par = par, loglik = f(par), hessian = H, newton = newton,
       optim_convergence = o1$convergence, optim_counts = o1$counts)
}

# Brute-force cross-check: the identity for every patient with a censored row (whatever d), Gauss-Hermite
# product rule of n_nodes per dimension over b | y_o; no pmvnorm at all.
loglik_gh <- function(par, D, n_nodes) {
  th <- unpack(par, D$k, D$q)
  g <- gh_grid(n_nodes, D$q)
  Si <- solve(th$Sigma)
  sum(vapply(D$pats, function(p) {
    o <- !p$cens
    mu <- as.numeric(p$X %*% th$beta)
    ll <- if (any(o)) dmvnorm(p$y[o], mu[o], p$Z[o, , drop = FALSE] %*% th$Sigma %*% t(p$Z[o, , drop = FALSE]) +
                                diag(th$sigma^2, sum(o)), log = TRUE) else 0
    if (!any(p$cens)) return(ll)
    Zo <- p$Z[o, , drop = FALSE]
    Pinv <- solve(crossprod(Zo) / th$sigma^2 + Si)
    bhat <- Pinv %*% crossprod(Zo, p$y[o] - mu[o]) / th$sigma^2
    b <- sweep(g$x %*% chol(Pinv), 2, as.numeric(bhat), "+")  # nodes x q, rows ~ N(bhat, Pinv)
    ce <- p$cens
    eta <- b %*% t(p$Z[ce, , drop = FALSE]) + matrix(mu[ce], nrow(b), sum(ce), byrow = TRUE)
    lp <- pnorm(sweep(sweep(eta, 2, p$limit[ce]), 2, -p$sgn[ce], "*") / th$sigma, log.p = TRUE)
    ll + logsumexp(g$lw + rowSums(lp))
  }, numeric(1)))
}
