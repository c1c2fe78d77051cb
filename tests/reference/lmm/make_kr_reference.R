# Kenward-Roger golden values for the growth model (sciatica_outcomes.models.kenward_roger), from pbkrtest.
# Run from the repository root:  Rscript tests/reference/lmm/make_kr_reference.R
# For every case of cases.json fitted by REML it fits, as make_reference.R does,
#   m <- lmer(formula, data, REML = TRUE, control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
# and records, with R's own theta and sigma (so that the Python side can evaluate KR at exactly R's parameters):
#   pbkrtest::vcovAdj(m)                                   adjusted covariance of beta (Kenward & Roger 1997)
#   vcov(m)                                                unadjusted covariance
#   summary(m, ddf = "Kenward-Roger")                      per coefficient: estimate, se, df, t, p (lmerTest;
#                                                          se from vcovAdj, df from pbkrtest::Lb_ddf)
#   anova(m, ddf = "Kenward-Roger")                        per term (type III): F, NumDF, DenDF, p and the
#                                                          term's contrast matrix (show_tests)
#   pbkrtest::KRmodcomp(m, L) for L = all non-intercept coefficients jointly: F, ndf, ddf, F.scaling, p,
#                                                          and the unscaled FtestU
# Output: tests/reference/lmm/kr_reference.json (one entry per case).
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite); library(splines)
})
here <- "tests/reference/lmm"
cases <- fromJSON(file.path(here, "cases.json"), simplifyVector = FALSE)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                 lmerTest = as.character(packageVersion("lmerTest")),
                 pbkrtest = as.character(packageVersion("pbkrtest")))
num <- function(x) unname(as.numeric(x))
mat <- function(x) unname(lapply(seq_len(nrow(x)), function(i) num(as.matrix(x)[i, ])))
out <- list()
for (case in cases) {
  if (!isTRUE(case$reml)) next
  d <- read.csv(file.path(here, case$data), stringsAsFactors = FALSE)
  for (col in names(d)) if (is.character(d[[col]])) d[[col]] <- factor(d[[col]])
  if (!is.null(case$reference)) for (col in names(case$reference))
    d[[col]] <- relevel(d[[col]], ref = case$reference[[col]])
  m <- lmer(as.formula(case$formula), data = d, REML = TRUE, control = ctrl)
  t0 <- proc.time()[["elapsed"]]
  va <- vcovAdj(m)
  seconds <- proc.time()[["elapsed"]] - t0
  cf <- coef(summary(m, ddf = "Kenward-Roger"))
  an <- anova(m, ddf = "Kenward-Roger")
  an_l <- show_tests(an, fractions = FALSE)  # the type III contrast matrix of each term
  nm <- names(fixef(m))
  idx <- which(nm != "(Intercept)")
  L <- diag(length(nm))[idx, , drop = FALSE]
  kr <- KRmodcomp(m, L)
  te <- kr$test
  out[[case$name]] <- list(
    case = case$name,
    call = sprintf("lmer(%s, REML = TRUE, control = lmerControl(optimizer = 'bobyqa')); vcovAdj(m)", case$formula),
    versions = versions,
    theta = num(getME(m, "theta")), sigma = sigma(m), names = nm,
    vcov = mat(vcov(m)), vcov_adjusted = mat(va), vcovadj_seconds = seconds,
    fixed = list(call = "coef(summary(m, ddf = 'Kenward-Roger'))", term = rownames(cf),
                 estimate = num(cf[, "Estimate"]), se = num(cf[, "Std. Error"]), df = num(cf[, "df"]),
                 t = num(cf[, "t value"]), p = num(cf[, "Pr(>|t|)"])),
    anova = list(call = "anova(m, ddf = 'Kenward-Roger')", term = rownames(an), f = num(an[["F value"]]),
                 num_df = num(an$NumDF), den_df = num(an$DenDF), p = num(an[["Pr(>F)"]]),
                 contrasts = unname(lapply(rownames(an), function(t) mat(an_l[[t]])))),
    krmodcomp = list(call = "KRmodcomp(m, L), L = rows of the identity for every non-intercept coefficient",
                     coefficients = nm[idx], f = te["Ftest", "stat"], num_df = te["Ftest", "ndf"],
                     den_df = te["Ftest", "ddf"], f_scaling = te["Ftest", "F.scaling"],
                     p = te["Ftest", "p.value"], f_unscaled = te["FtestU", "stat"],
                     p_unscaled = te["FtestU", "p.value"])
  )
  cat(case$name, "done\n")
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE),
           file.path(here, "kr_reference.json"))
