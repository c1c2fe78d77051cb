# Reference values for the MMRM observation weights and empirical (sandwich) covariances
# (tests/models/test_sandwich.py).
#
# Run from the repository root:
#     Rscript tests/reference/mmrm/sandwich_reference.R
# Writes tests/reference/mmrm/fev_sandwich.json. On openpharma/mmrm's fev_data (fev_data.csv), rows with a
# response, for FEV1 ~ ARMCD * AVISIT and each structure (us, cs, csh, ar1), unweighted and weighted:
#   nlme::gls(..., method = "REML") with the SAS/mmrm weight convention Var(e_ij) = Sigma_jj / WEIGHT_ij
#     (weights = varFixed(~ 1 / WEIGHT), combined with varIdent for the heterogeneous structures):
#     coefficients, model-based SEs, REML log-likelihood;
#   clubSandwich::vcovCR(fit, cluster = USUBJID, type = "CR0" | "CR3" | "CR2") (mmrm's "Empirical",
#     "Empirical-Jackknife", "Empirical-Bias-Reduced") and coef_test(fit, vcov, test = "Satterthwaite")
#     df (df_Satt), as openpharma/mmrm's tests/testthat/test-empirical.R compares them;
#   mmrm's "Empirical-Bias-Reduced" itself (mmrm_br): src/empirical.cpp transcribed into R at the gls fit
#     (whitening by the inverse Cholesky factor of each subject's getVarCov, A_i = pseudoInverseSqrt(I - H_ii)).
#     clubSandwich's CR2 builds its adjustment differently (mmrm's tests compare the two at 1e-3).
# R 4 with nlme, clubSandwich, jsonlite.

suppressPackageStartupMessages({
  library(nlme)
  library(clubSandwich)
  library(jsonlite)
})

here <- "tests/reference/mmrm"
d <- read.csv(file.path(here, "fev_data.csv"), na.strings = "NA")
d <- d[!is.na(d$FEV1), ]
d$AVISIT <- factor(d$AVISIT, levels = paste0("VIS", 1:4))
d$ARMCD <- factor(d$ARMCD, levels = c("PBO", "TRT"))
d$USUBJID <- factor(d$USUBJID)
d$WINV <- 1 / d$WEIGHT

ctl_of <- function(opt) glsControl(maxIter = 1000, msMaxIter = 1000, tolerance = 1e-14, msTol = 1e-14, opt = opt)
# both gls optimisers; the fit with the higher REML log-likelihood is kept (one may fail or stop early)
best_gls <- function(args) {
  fits <- lapply(c("nlminb", "optim"), function(o) tryCatch(do.call(gls, c(args, list(control = ctl_of(o)))),
                                                         error = function(e) NULL))
  fits <- Filter(Negate(is.null), fits)
  fits[[which.max(sapply(fits, function(f) as.numeric(logLik(f))))]]
}
corr_of <- function(s) switch(s,
  us = corSymm(form = ~ VISITN | USUBJID), cs = corCompSymm(form = ~ 1 | USUBJID),
  ar1 = corAR1(form = ~ VISITN | USUBJID), csh = corCompSymm(form = ~ 1 | USUBJID))
var_of <- function(s, weighted) {
  het <- s %in% c("us", "csh")
  if (het && weighted) return(varComb(varIdent(form = ~ 1 | AVISIT), varFixed(~ WINV)))
  if (het) return(varIdent(form = ~ 1 | AVISIT))
  if (weighted) return(varFixed(~ WINV))
  NULL
}

# src/empirical.cpp of openpharma/mmrm with type "Empirical-Bias-Reduced", at a gls fit
mmrm_br <- function(fit) {
  x <- model.matrix(FEV1 ~ ARMCD * AVISIT, d)
  r <- d$FEV1 - drop(x %*% coef(fit))
  phi <- vcov(fit)
  meat <- matrix(0, ncol(x), ncol(x))
  for (id in levels(d$USUBJID)) {
    rows <- which(d$USUBJID == id)
    if (length(rows) == 0) next
    v <- as.matrix(getVarCov(fit, individual = id))
    li <- solve(t(chol(v)))  # inverse lower Cholesky factor
    xt <- li %*% x[rows, , drop = FALSE]
    rt <- li %*% r[rows]
    s <- svd(diag(length(rows)) - xt %*% phi %*% t(xt))
    tol <- .Machine$double.eps * length(rows) * s$d[1]
    a <- s$v %*% diag(ifelse(s$d > tol, 1 / sqrt(s$d), 0), length(rows)) %*% t(s$u)
    z <- t(xt) %*% a %*% rt
    meat <- meat + z %*% t(z)
  }
  unname(phi %*% meat %*% phi)
}

out <- list(formula = "FEV1 ~ ARMCD * AVISIT", data = "fev_data.csv rows with FEV1",
            r_version = R.version.string, nlme = as.character(packageVersion("nlme")),
            clubSandwich = as.character(packageVersion("clubSandwich")), fits = list())
for (s in c("us", "cs", "csh", "ar1")) {
  for (weighted in c(FALSE, TRUE)) {
    args <- list(model = FEV1 ~ ARMCD * AVISIT, data = as.name("d"), correlation = corr_of(s), method = "REML")
    vw <- var_of(s, weighted)
    if (!is.null(vw)) args$weights <- vw
    fit <- best_gls(args)
    rec <- list(structure = s, weighted = weighted, terms = names(coef(fit)),
                coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
                loglik = as.numeric(logLik(fit)))
    for (type in c("CR0", "CR3", "CR2")) {
      v <- vcovCR(fit, cluster = d$USUBJID, type = type)
      ct <- coef_test(fit, vcov = v, test = "Satterthwaite")
      rec[[type]] <- list(vcov = unname(as.matrix(v)), df = unname(ct$df_Satt))
    }
    rec$mmrm_br <- mmrm_br(fit)
    out$fits[[paste0(s, if (weighted) "_weighted" else "")]] <- rec
  }
}
writeLines(toJSON(out, digits = I(15), auto_unbox = TRUE, pretty = TRUE), file.path(here, "fev_sandwich.json"))
