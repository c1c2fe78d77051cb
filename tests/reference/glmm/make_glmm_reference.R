# Reference values for tests/models/test_glmm.py: lme4::glmer (Laplace, nAGQ = 25) and glmmTMB nbinom2.
# Run from this folder after `python make_data.py`: Rscript make_glmm_reference.R  -> glmm_reference.json
# Rerunning reproduces the committed cases to ~1e-13 relative (glmmTMB's random-slope fits move in the last
# digits between runs); new cases were appended to the committed JSON without rewriting the earlier ones.
# Each case: the data file, our formula/family/trials/offset/nagq, R's call, and R's estimates.
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(emmeans); library(jsonlite)})

read <- function(f) {
  d <- read.csv(f, stringsAsFactors = TRUE)
  for (v in intersect(c("herd", "period", "BROOD", "YEAR", "LOCATION", "INDEX", "patient", "adherence", "clinic"), names(d)))
    d[[v]] <- factor(d[[v]])
  d
}
cbpp <- read("cbpp.csv"); grouse <- read("grouseticks.csv"); flares <- read("flares.csv"); resp <- read("responders.csv")
nested <- read("nested.csv")
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))

# The exact Laplace deviance at glmer's own estimates, by Newton per group to machine precision (scalar random
# intercept). glmer's devfun (nAGQ = 1) differs from it by a small amount: the log-determinant it uses comes
# from PIRLS weights of an earlier iterate, not at the conditional modes.
exact_laplace <- function(m, family) {
  if (length(getME(m, "theta")) != 1 || ncol(getME(m, "Z")) != nlevels(getME(m, "flist")[[1]])) return(NULL)
  th <- getME(m, "theta"); eta0 <- as.numeric(getME(m, "X") %*% fixef(m)) + getME(m, "offset")
  g <- as.integer(getME(m, "flist")[[1]]); yy <- model.response(model.frame(m))
  n <- if (is.matrix(yy)) rowSums(yy) else rep(1, length(yy)); y <- if (is.matrix(yy)) yy[, 1] else yy
  u <- rep(0, max(g))
  for (it in 1:100) {
    eta <- eta0 + th * u[g]
    if (family == "binomial") { mu <- n * plogis(eta); w <- mu * (1 - plogis(eta)) } else { mu <- exp(eta); w <- mu }
    step <- (u - th * tapply(y - mu, g, sum)) / (1 + th^2 * tapply(w, g, sum))
    u <- u - step
    if (max(abs(step)) < 1e-13) break
  }
  eta <- eta0 + th * u[g]
  if (family == "binomial") { p <- plogis(eta); ll <- sum(dbinom(y, n, p, log = TRUE)); w <- n * p * (1 - p) } else {
    ll <- sum(dpois(y, exp(eta), log = TRUE)); w <- exp(eta) }
  -2 * ll + sum(u^2) + sum(log(1 + th^2 * tapply(w, g, sum)))
}

vc_rows <- function(vc) {
  d <- as.data.frame(vc)
  lapply(seq_len(nrow(d)), function(i) list(group = d$grp[i], term1 = d$var1[i],
    term2 = if (is.na(d$var2[i])) NULL else d$var2[i], vcov = d$vcov[i], sdcor = d$sdcor[i]))
}

glmer_case <- function(name, file, data, rformula, formula, family, nagq = 1, trials = NULL, offset = NULL) {
  fam <- switch(family, binomial = binomial, poisson = poisson)
  warn <- character(0)
  m <- withCallingHandlers(glmer(as.formula(rformula), data = data, family = fam, nAGQ = nagq, control = ctrl),
    warning = function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") })
  # for nAGQ > 1 glmer's logLik is built from deviance residuals, i.e. relative to the saturated model:
  # the full log-likelihood is logLik + saturated_loglik
  yy <- model.response(model.frame(m)); n <- if (is.matrix(yy)) rowSums(yy) else rep(1, length(yy))
  ys <- if (is.matrix(yy)) yy[, 1] else yy
  sat <- if (family == "binomial") sum(dbinom(ys, n, ys / n, log = TRUE)) else sum(dpois(ys, ys, log = TRUE))
  list(name = name, file = file, engine = "lme4::glmer", r_call = rformula, formula = formula, family = family,
       nagq = nagq, trials = trials, offset = offset, saturated_loglik = sat,
       fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       theta = unname(getME(m, "theta")), varcorr = vc_rows(VarCorr(m)),
       loglik = as.numeric(logLik(m)), aic = AIC(m), bic = BIC(m), nobs = nobs(m),
       exact_laplace_deviance_at_estimates = if (nagq == 1) exact_laplace(m, family) else NULL,
       warnings = warn, conv_messages = m@optinfo$conv$lme4$messages)
}

tmb_case <- function(name, file, data, rformula, formula, family = "negbin2", offset = NULL, trials = NULL,
                     em = NULL) {
  warn <- character(0)
  fam <- switch(family, negbin2 = nbinom2, binomial = binomial, poisson = poisson)
  m <- withCallingHandlers(glmmTMB(as.formula(rformula), data = data, family = fam),
    warning = function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") })
  vc <- VarCorr(m)$cond
  rows <- list()
  for (g in names(vc)) {
    s <- vc[[g]]; sds <- attr(s, "stddev"); cr <- attr(s, "correlation"); nm <- names(sds)
    for (i in seq_along(nm)) rows[[length(rows) + 1]] <- list(group = g, term1 = nm[i], vcov = sds[i]^2, sdcor = sds[i])
    if (length(nm) > 1) for (j in 1:(length(nm) - 1)) for (i in (j + 1):length(nm))
      rows[[length(rows) + 1]] <- list(group = g, term1 = nm[j], term2 = nm[i], vcov = s[i, j], sdcor = cr[i, j])
  }
  list(name = name, file = file, engine = paste("glmmTMB", family), r_call = rformula, formula = formula,
       family = family, nagq = 1, trials = trials, offset = offset,
       fixef = as.list(fixef(m)$cond), se = as.list(sqrt(diag(vcov(m)$cond))),
       size = if (family == "negbin2") sigma(m) else NULL, varcorr = rows, loglik = as.numeric(logLik(m)), aic = AIC(m), bic = BIC(m),
       nobs = nobs(m), warnings = warn, conv_messages = list(m$fit$message),
       emmeans = if (is.null(em)) NULL else {
         e <- as.data.frame(do.call(emmeans, c(list(m), em$args)))
         list(specs = em$specs, at = em$at, rows = lapply(seq_len(nrow(e)), function(i)
           list(level = as.character(e[i, 1]), emmean = e$emmean[i], se = e$SE[i])))
       })
}

cases <- list(
  glmer_case("cbpp_laplace", "cbpp.csv", cbpp, "cbind(incidence, size - incidence) ~ period + (1 | herd)",
             "incidence ~ period + (1 | herd)", "binomial", trials = "size"),
  glmer_case("cbpp_agq25", "cbpp.csv", cbpp, "cbind(incidence, size - incidence) ~ period + (1 | herd)",
             "incidence ~ period + (1 | herd)", "binomial", nagq = 25, trials = "size"),
  glmer_case("grouse_poisson", "grouseticks.csv", grouse, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)",
             "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", "poisson"),
  glmer_case("grouse_agq25", "grouseticks.csv", grouse, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)",
             "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", "poisson", nagq = 25),
  glmer_case("flares_poisson_slope", "flares.csv", flares,
             "flares ~ week + adherence + (week | patient) + offset(log_sessions)",
             "flares ~ week + adherence + (week | patient)", "poisson", offset = "log_sessions"),
  glmer_case("flared_sessions_binomial", "flares.csv", flares,
             "cbind(flared_sessions, sessions - flared_sessions) ~ week + adherence + (1 | patient)",
             "flared_sessions ~ week + adherence + (1 | patient)", "binomial", trials = "sessions"),
  glmer_case("responders_slope", "responders.csv", resp, "responder ~ week + age + (week | patient)",
             "responder ~ week + age + (week | patient)", "binomial"),
  glmer_case("responders_agq25", "responders.csv", resp, "responder ~ week + age + (1 | patient)",
             "responder ~ week + age + (1 | patient)", "binomial", nagq = 25),
  tmb_case("flares_negbin", "flares.csv", flares, "flares_nb ~ week + adherence + (1 | patient) + offset(log_sessions)",
           "flares_nb ~ week + adherence + (1 | patient)", offset = "log_sessions"),
  tmb_case("flares_negbin_slope", "flares.csv", flares,
           "flares_nb ~ week + adherence + (week | patient) + offset(log_sessions)",
           "flares_nb ~ week + adherence + (week | patient)", offset = "log_sessions"),
  # glmmTMB's Laplace approximation is exact (TMB's inner optimisation to machine precision): the reference
  # for the Laplace deviance; glmer's (nAGQ = 1) carries a small error of its PIRLS (see README)
  tmb_case("cbpp_laplace_tmb", "cbpp.csv", cbpp, "cbind(incidence, size - incidence) ~ period + (1 | herd)",
           "incidence ~ period + (1 | herd)", "binomial", trials = "size",
           em = list(specs = "period", at = NULL, args = list(specs = ~period))),
  tmb_case("grouse_poisson_tmb", "grouseticks.csv", grouse, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)",
           "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", "poisson"),
  tmb_case("flares_poisson_slope_tmb", "flares.csv", flares,
           "flares ~ week + adherence + (week | patient) + offset(log_sessions)",
           "flares ~ week + adherence + (week | patient)", "poisson", offset = "log_sessions",
           em = list(specs = "adherence", at = list(week = 6),
                     args = list(specs = ~adherence, at = list(week = 6), offset = 0))),
  tmb_case("flared_sessions_binomial_tmb", "flares.csv", flares,
           "cbind(flared_sessions, sessions - flared_sessions) ~ week + adherence + (1 | patient)",
           "flared_sessions ~ week + adherence + (1 | patient)", "binomial", trials = "sessions"),
  tmb_case("responders_slope_tmb", "responders.csv", resp, "responder ~ week + age + (week | patient)",
           "responder ~ week + age + (week | patient)", "binomial"),
  # patients nested in clinics (nested.csv: patient codes unique across clinics, so (1 | clinic/patient) is
  # (1 | clinic) + (1 | patient)); grouseticks' broods nested in locations, the classic (1 | LOCATION/BROOD)
  glmer_case("nested_poisson", "nested.csv", nested,
             "flares ~ week + adherence + (1 | clinic) + (1 | patient) + offset(log_sessions)",
             "flares ~ week + adherence + (1 | clinic) + (1 | patient)", "poisson", offset = "log_sessions"),
  glmer_case("nested_poisson_slope", "nested.csv", nested,
             "flares ~ week + adherence + (1 | clinic) + (week | patient) + offset(log_sessions)",
             "flares ~ week + adherence + (1 | clinic) + (1 + week | patient)", "poisson", offset = "log_sessions"),
  glmer_case("nested_binomial", "nested.csv", nested, "responder ~ week + adherence + (1 | clinic) + (1 | patient)",
             "responder ~ week + adherence + (1 | clinic) + (1 | patient)", "binomial"),
  glmer_case("grouse_nested", "grouseticks.csv", grouse, "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION/BROOD)",
             "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION) + (1 | BROOD)", "poisson"),
  tmb_case("nested_poisson_tmb", "nested.csv", nested,
           "flares ~ week + adherence + (1 | clinic) + (1 | patient) + offset(log_sessions)",
           "flares ~ week + adherence + (1 | clinic) + (1 | patient)", "poisson", offset = "log_sessions"),
  tmb_case("nested_poisson_slope_tmb", "nested.csv", nested,
           "flares ~ week + adherence + (1 | clinic) + (week | patient) + offset(log_sessions)",
           "flares ~ week + adherence + (1 | clinic) + (1 + week | patient)", "poisson", offset = "log_sessions"),
  tmb_case("nested_negbin_tmb", "nested.csv", nested,
           "flares_nb ~ week + adherence + (1 | clinic) + (1 | patient) + offset(log_sessions)",
           "flares_nb ~ week + adherence + (1 | clinic) + (1 | patient)", offset = "log_sessions"),
  tmb_case("nested_binomial_tmb", "nested.csv", nested, "responder ~ week + adherence + (1 | clinic) + (1 | patient)",
           "responder ~ week + adherence + (1 | clinic) + (1 | patient)", "binomial"),
  tmb_case("grouse_nested_tmb", "grouseticks.csv", grouse, "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION/BROOD)",
           "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION) + (1 | BROOD)", "poisson"),
  # a random slope per clinic too (a 2 x 2 clinic block in the Schur complement)
  tmb_case("nested_clinic_slope_tmb", "nested.csv", nested,
           "flares ~ week + adherence + (week | clinic) + (week | patient) + offset(log_sessions)",
           "flares ~ week + adherence + (1 + week | clinic) + (1 + week | patient)", "poisson",
           offset = "log_sessions")
)
# likelihood-ratio test of nested fits: anova(m0, m1) (nAGQ = 25: glmer's saturated part cancels)
m0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, binomial, nAGQ = 25, control = ctrl)
m1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 25, control = ctrl)
lrt <- anova(m0, m1)
lrt_out <- list(file = "cbpp.csv", small = "incidence ~ 1 + (1 | herd)", large = "incidence ~ period + (1 | herd)",
                family = "binomial", trials = "size", nagq = 25, chisq = lrt$Chisq[2], df = lrt$Df[2],
                p = lrt[["Pr(>Chisq)"]][2])
out <- list(generated_by = "tests/reference/glmm/make_glmm_reference.R",
            versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            glmmTMB = as.character(packageVersion("glmmTMB"))),
            cases = cases, lrt = lrt_out)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null"), "glmm_reference.json")
cat("wrote", length(cases), "cases\n")
