# Exact maximum-likelihood fits of the censored (Tobit) growth model for tests/models/test_censored_reference.py,
# independent of the package's engine and of its quadrature around the conditional modes.
# Run from this folder after `python make_data.py`:  Rscript make_censored_reference.R  -> censored_reference.json
# (about 10-20 minutes on one core). The likelihood and the optimizer are in censored_likelihood.R (its header
# gives the method: dmvnorm for the observed rows, pmvnorm / an exact identity for the censored rows given them).
# Parameters: beta, log SDs of the random effects, atanh of their correlation (q = 2), log sigma; SEs of beta
# from the inverse of minus the Hessian of log L (its beta block does not depend on the scale of the variance
# parameters at an optimum). Start: lme4's ML fit with the censored values taken as exact.
# Written per design: the estimates, SEs, the log-likelihood at the optimum, the Newton decrements of the
# polish, the full parameter vector and its covariance, the log-likelihood at the generating truth (a second
# point at which the package's likelihood can be compared), and the accuracy checks of the log-likelihood at
# the optimum: the identity with 2 N_GH nodes, Miwa (4096 steps) and GenzBretz (randomised; seed 15) for the
# orthants of dimension >= 4, and a brute-force Gauss-Hermite evaluation of every censored patient.
suppressPackageStartupMessages({library(jsonlite); library(lme4)})
source("censored_likelihood.R")

fit_design <- function(name, file, formula, fixed, random, upper = NULL, lower = NULL, truth = NULL) {
  d <- read.csv(file)
  D <- split_patients(d, fixed, random, upper, lower)
  rf <- as.formula(paste("y ~", deparse(fixed[[2]]), "+ (", deparse(random[[2]]), "| id)"))
  st <- lmer(rf, data = d, REML = FALSE)
  vc <- as.data.frame(VarCorr(st))
  sds <- vc$sdcor[vc$grp == "id" & is.na(vc$var2)]
  rho <- if (D$q == 2) vc$sdcor[vc$grp == "id" & !is.na(vc$var2)] else 0
  start <- pack(fixef(st), pmax(sds, 1e-3), rho, sigma(st))
  start_from <- "lme4 ML fit with the censored values taken as exact"
  # CENSORED_START=file.json ({"design_b": [R parameters], ...}) starts a design elsewhere (e.g. at the package's
  # high-node fit, to save time): the optimum does not depend on it, the Newton decrement of the polish on this
  # likelihood decides convergence
  sf <- Sys.getenv("CENSORED_START")
  if (nzchar(sf) && !is.null(fromJSON(sf)[[name]])) {
    start <- unlist(fromJSON(sf)[[name]])
    start_from <- paste("CENSORED_START", basename(sf))
  }
  t0 <- proc.time()[["elapsed"]]
  fit <- fit_exact(D, start)
  secs <- proc.time()[["elapsed"]] - t0
  par <- fit$par
  ll <- fit$loglik
  cov <- solve(-fit$hessian)
  th <- unpack(par, D$k, D$q)
  se_par <- sqrt(diag(cov))
  set.seed(15)
  acc <- list(loglik_identity_2x_nodes = loglik(par, D, n_gh = 2 * N_GH),
              loglik_miwa_4096 = loglik(par, D, high = "miwa", steps = 4096),
              loglik_genzbretz = loglik(par, D, high = "genzbretz"),
              loglik_gauss_hermite_all_200 = loglik_gh(par, D, 200))
  ptruth <- if (is.null(truth)) NULL else do.call(pack, truth)
  out <- list(
    name = name, file = file, formula = formula, upper = upper, lower = lower,
    nobs = D$n, n_patients = length(D$pats), n_right_censored = D$n_right, n_left_censored = D$n_left,
    max_censored_per_patient = D$max_censored, terms = D$names, random_terms = D$zn,
    estimates = setNames(as.list(th$beta), D$names), se = setNames(as.list(se_par[1:D$k]), D$names),
    sd = setNames(as.list(th$sds), D$zn), corr = if (D$q == 2) th$rho else NULL, sigma = th$sigma,
    par = par, par_names = c(D$names, paste0("log_sd_", D$zn), if (D$q == 2) "atanh_corr" else NULL,
                             "log_sigma"),
    par_cov = cov, loglik = ll, newton = fit$newton, optim_convergence = fit$optim_convergence,
    optim_counts = fit$optim_counts, fit_seconds = secs, accuracy = acc,
    truth = truth, truth_par = ptruth, loglik_at_truth = if (is.null(ptruth)) NULL else loglik(ptruth, D),
    start_from = start_from, start = start,
    start_lmer_naive = list(fixef = as.list(fixef(st)), loglik = as.numeric(logLik(st)))
  )
  cat(sprintf("%s: loglik %.10f (identity x2 nodes %+.2e, Miwa %+.2e, GenzBretz %+.2e, GH all %+.2e), %d Newton, %.0f s\n",
              name, ll, acc[[1]] - ll, acc[[2]] - ll, acc[[3]] - ll, acc[[4]] - ll, length(fit$newton), secs))
  print(round(unlist(out$estimates), 6))
  out
}

designs <- list(
  design_a = function() fit_design("design_a", "design_a.csv", "y ~ week + (1 | id)", ~ week, ~ 1, upper = 3.4,
    truth = list(beta = c(2.4, 0.04), sds = 0.6, rho = 0, sigma = 0.35)),
  design_b = function() fit_design("design_b", "design_b.csv", "y ~ week * arm + (week | id)", ~ week * arm,
    ~ week, upper = "cap",
    truth = list(beta = c(log(9), 0.05, -0.1, 0.02), sds = c(0.6, 0.025), rho = -0.3, sigma = 0.25)),
  design_c = function() fit_design("design_c", "design_c.csv", "y ~ week + (week | id)", ~ week, ~ week,
    upper = 10, lower = 0, truth = list(beta = c(5, 0.12), sds = c(4.5, 0.25), rho = -0.3, sigma = 1.5))
)
# `Rscript make_censored_reference.R design_b design_c` refits only those designs and keeps the others of an
# existing censored_reference.json (so that the designs can run in parallel processes)
wanted <- commandArgs(trailingOnly = TRUE)
if (length(wanted) == 0) wanted <- names(designs)
fitted <- lapply(designs[wanted], function(f) f())
meta <- list(
  r_version = R.version.string, mvtnorm = as.character(packageVersion("mvtnorm")),
  numDeriv = as.character(packageVersion("numDeriv")), lme4_start = as.character(packageVersion("lme4")),
  orthant = list(d1 = "pnorm(log.p = TRUE)", d2_d3 = sprintf("pmvnorm TVPACK(abseps = %g)", TVPACK_EPS),
                 d4_plus = sprintf("identity E_{b|y_o} prod Phi, Gauss-Hermite %d nodes per dimension", N_GH),
                 search = sprintf("the same with %d nodes for d >= 4", N_GH_SEARCH),
                 checks = "identity 2x nodes; pmvnorm Miwa(steps = 4096); pmvnorm GenzBretz(maxpts = 2e6, abseps = 1e-9, releps = 0) with set.seed(15); Gauss-Hermite 200 nodes for every censored patient"),
  optimizer = "optim BFGS (central-difference gradient, reltol 1e-14) + Newton steps with numDeriv::hessian (Richardson, r = 2)",
  parameters = "beta, log SD of each random effect, atanh(correlation), log sigma"
)
out_file <- "censored_reference.json"
cases <- if (file.exists(out_file)) fromJSON(out_file, simplifyVector = FALSE)$cases else list()
for (nm in names(fitted)) cases[[nm]] <- fitted[[nm]]
cases <- cases[intersect(names(designs), names(cases))]
writeLines(toJSON(list(meta = meta, cases = cases), auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null"),
           out_file)
