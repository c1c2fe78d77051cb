# Reference values for the MMRM golden tests (tests/models/test_mmrm.py).
#
# Run from the repository root after make_data.py:
#     Rscript tests/reference/mmrm/gls_reference.R
# Writes tests/reference/mmrm/<dataset>.json with, per covariance structure:
#   nlme::gls(<formula>, correlation = <corStruct>, weights = <varIdent or none>, method = "REML")
#     coefficients, standard errors, logLik, AIC, BIC, the T x T covariance of the visits (getVarCov of a
#     subject seen at every visit);
#   Satterthwaite df of every coefficient, computed exactly as emmeans does for gls (emmeans:::gls_grad for
#     d vcov(beta) / d theta and the nlme apVar for Cov(theta), with glsControl(apVar = TRUE, natural = FALSE)
#     so apVar is in the optimisation parametrisation);
#   emmeans::emmeans(fit, ~ visit, mode = "satterthwaite") and pairs(emmeans(fit, ~ <group> | visit));
#   for "cs" also lmerTest::lmer(<formula> + (1 | id)) coefficient df (random intercept == compound symmetry
#   when the correlation is positive).
# R 4 with nlme, emmeans, lmerTest, jsonlite.

suppressPackageStartupMessages({
  library(nlme)
  library(emmeans)
  library(lmerTest)
  library(jsonlite)
})

here <- "tests/reference/mmrm"
specs <- list(
  synth_odi = list(formula = odi ~ visit * group + baseline_odi + visit:baseline_odi, id = "episode_id",
                   group = "group", levels = c("w6", "w12", "w26")),
  mar5 = list(formula = y ~ visit * arm + base, id = "id", group = "arm", levels = paste0("V", 1:5)),
  small4 = list(formula = y ~ visit + arm + visit:arm + sex + age, id = "id", group = "arm",
                levels = paste0("wk", c(4, 8, 12, 16))),
  hetero6 = list(formula = y ~ visit * trt, id = "id", group = "trt", levels = as.character(1:6))
)

structures <- c("us", "cs", "csh", "ar1", "ar1h", "toep", "toeph")

# both gls optimisers with tight tolerances; the fit with the higher REML log-likelihood is kept (nlminb
# sometimes stops ~1e-7 short of the optimum that optim reaches)
ctl_of <- function(opt) glsControl(maxIter = 1000, msMaxIter = 1000, tolerance = 1e-14, msTol = 1e-14,
                                   msVerbose = FALSE, apVar = TRUE, natural = FALSE, returnObject = TRUE,
                                   opt = opt)
best_gls <- function(args) {
  fits <- lapply(c("nlminb", "optim"), function(o) tryCatch(do.call(gls, c(args, list(control = ctl_of(o)))),
                                                         error = function(e) e))
  ok <- Filter(function(f) !inherits(f, "error"), fits)
  if (length(ok) == 0) return(fits[[1]])
  ll <- sapply(ok, function(f) as.numeric(logLik(f)))
  ok[[which.max(ll)]]
}

corr_of <- function(s, nt) {
  switch(s,
    us = corSymm(form = ~ vnum | sid),
    cs = corCompSymm(form = ~ 1 | sid), csh = corCompSymm(form = ~ 1 | sid),
    ar1 = corAR1(form = ~ vnum | sid), ar1h = corAR1(form = ~ vnum | sid),
    toep = corARMA(form = ~ vnum | sid, p = nt - 1, q = 0),
    toeph = corARMA(form = ~ vnum | sid, p = nt - 1, q = 0))
}

sat_df <- function(fit, d) {
  if (!is.matrix(fit$apVar)) return(rep(NA_real_, length(coef(fit))))
  V <- vcov(fit)
  G <- emmeans:::gls_grad(fit, fit$call, d, V)
  A <- fit$apVar
  sapply(seq_along(coef(fit)), function(j) {
    k <- numeric(length(coef(fit))); k[j] <- 1
    est <- drop(t(k) %*% V %*% k)
    g <- sapply(G, function(M) drop(t(k) %*% M %*% k))
    2 * est^2 / drop(t(g) %*% A %*% g)
  })
}

tidy_emm <- function(x) {
  s <- as.data.frame(summary(x))
  s
}

for (name in names(specs)) {
  sp <- specs[[name]]
  d <- read.csv(file.path(here, paste0(name, ".csv")), stringsAsFactors = FALSE)
  d$visit <- factor(as.character(d$visit), levels = sp$levels)
  d$vnum <- as.integer(d$visit)
  d$sid <- d[[sp$id]]
  d <- d[order(d$sid, d$vnum), ]
  nt <- length(sp$levels)
  full_id <- names(which(table(d$sid) == nt))[1]
  out <- list(dataset = name, formula = deparse(sp$formula), visits = sp$levels, group = sp$group,
              r_version = R.version.string, nlme = as.character(packageVersion("nlme")),
              emmeans = as.character(packageVersion("emmeans")), fits = list())
  for (s in structures) {
    weights <- if (s %in% c("us", "csh", "ar1h", "toeph")) varIdent(form = ~ 1 | visit) else NULL
    fit <- best_gls(list(model = sp$formula, data = d, correlation = corr_of(s, nt), weights = weights,
                         method = "REML"))
    if (inherits(fit, "error")) {
      out$fits[[s]] <- list(error = conditionMessage(fit))
      next
    }
    fit$call$model <- sp$formula
    fit$call$data <- d
    em <- as.data.frame(summary(emmeans(fit, ~ visit, data = d, mode = "satterthwaite")))
    pr <- as.data.frame(summary(pairs(emmeans(fit, as.formula(paste("~", sp$group, "| visit")), data = d,
                                             mode = "satterthwaite"), adjust = "none")))
    entry <- list(
      optimiser = fit$call$control$opt,
      call = paste0("gls(", deparse(sp$formula), ", correlation = ", class(fit$modelStruct$corStruct)[1],
                    if (is.null(weights)) "" else ", weights = varIdent(form = ~1 | visit)",
                    ", method = \"REML\")"),
      coef_names = names(coef(fit)), estimate = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
      df = sat_df(fit, d), apvar_matrix = is.matrix(fit$apVar),
      loglik = as.numeric(logLik(fit)), aic = AIC(fit), bic = BIC(fit),
      sigma = unclass(getVarCov(fit, individual = full_id)),
      emmeans = list(visit = as.character(em$visit), estimate = em$emmean, se = em$SE, df = em$df),
      pairs = list(visit = as.character(pr$visit), contrast = as.character(pr$contrast),
                   estimate = pr$estimate, se = pr$SE, df = pr$df)
    )
    if (s == "cs") {
      lf <- update(sp$formula, . ~ . + (1 | sid))
      lm_fit <- lmerTest::lmer(lf, data = d, REML = TRUE,
                               control = lmerControl(optCtrl = list(ftol_abs = 1e-12, xtol_abs = 1e-12)))
      co <- summary(lm_fit)$coefficients
      entry$lmer <- list(call = paste0("lmerTest::lmer(", deparse(lf), ", REML = TRUE)"),
                         coef_names = rownames(co), estimate = unname(co[, "Estimate"]),
                         se = unname(co[, "Std. Error"]), df = unname(co[, "df"]),
                         loglik = as.numeric(logLik(lm_fit)))
    }
    out$fits[[s]] <- entry
  }
  if (name == "mar5") {
    ml <- best_gls(list(model = sp$formula, data = d, correlation = corSymm(form = ~ vnum | sid),
                        weights = varIdent(form = ~ 1 | visit), method = "ML"))
    out$ml_us <- list(call = "gls(..., corSymm, varIdent, method = \"ML\")", estimate = unname(coef(ml)),
                      se = unname(sqrt(diag(vcov(ml)))), loglik = as.numeric(logLik(ml)),
                      sigma = unclass(getVarCov(ml, individual = full_id)))
  }
  write_json(out, file.path(here, paste0(name, ".json")), digits = NA, auto_unbox = TRUE, pretty = TRUE)
  cat(name, "done\n")
}
