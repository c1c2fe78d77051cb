# Golden values for the growth-model engine (sciatica_outcomes.models), from lme4, lmerTest and emmeans.
# Run from the repository root after make_datasets.py:  Rscript tests/reference/lmm/make_reference.R
# For every case in cases.json it fits
#   lmer(formula, data, REML = reml, control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
# with lmerTest loaded (summary(): Satterthwaite df), records VarCorr, sigma, logLik, AIC, BIC, theta,
#   emmeans(m, specs, at = at, lmer.df = "satterthwaite", lmerTest.limit = Inf) and pairs() of it,
#   anova(m_small, m) (likelihood-ratio test, ML refits) and contest(m, L, joint = TRUE) where asked,
# ranef(m, condVar = TRUE) for the first five levels of each grouping factor,
# and the same fit with lme4's default optimizer (nloptwrap) with its convergence messages.
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(emmeans); library(jsonlite); library(splines)
})
here <- "tests/reference/lmm"
cases <- fromJSON(file.path(here, "cases.json"), simplifyVector = FALSE)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                 lmerTest = as.character(packageVersion("lmerTest")),
                 emmeans = as.character(packageVersion("emmeans")))
num <- function(x) unname(as.numeric(x))
for (case in cases) {
  d <- read.csv(file.path(here, case$data), stringsAsFactors = FALSE)
  for (col in names(d)) if (is.character(d[[col]])) d[[col]] <- factor(d[[col]])
  if (!is.null(case$reference)) for (col in names(case$reference))
    d[[col]] <- relevel(d[[col]], ref = case$reference[[col]])
  f <- as.formula(case$formula)
  m <- lmer(f, data = d, REML = case$reml, control = ctrl)
  cf <- coef(summary(m))
  vc <- as.data.frame(VarCorr(m))
  out <- list(
    case = case$name, call = sprintf("lmer(%s, REML = %s, control = lmerControl(optimizer = 'bobyqa'))",
                                     case$formula, case$reml),
    versions = versions,
    fixed = list(term = rownames(cf), estimate = num(cf[, "Estimate"]), se = num(cf[, "Std. Error"]),
                 df = num(cf[, "df"]), t = num(cf[, "t value"]), p = num(cf[, "Pr(>|t|)"])),
    varcorr = list(grp = vc$grp, var1 = ifelse(is.na(vc$var1), "", vc$var1),
                   var2 = ifelse(is.na(vc$var2), "", vc$var2), vcov = vc$vcov, sdcor = vc$sdcor),
    sigma = sigma(m), loglik = num(logLik(m)), aic = AIC(m), bic = BIC(m),
    deviance = if (case$reml) num(REMLcrit(m)) else num(deviance(m)),
    theta = num(getME(m, "theta")), nobs = nobs(m), ngrps = as.list(ngrps(m)),
    singular = isSingular(m),
    messages = as.list(m@optinfo$conv$lme4$messages)
  )
  re <- ranef(m, condVar = TRUE)
  out$ranef <- lapply(names(re), function(g) {
    r <- re[[g]]
    k <- min(5L, nrow(r))
    pv <- attr(r, "postVar")
    sdv <- if (is.array(pv) && length(dim(pv)) == 3L)
      lapply(seq_len(ncol(r)), function(j) sqrt(pv[j, j, seq_len(k)])) else NULL
    list(group = g, level = rownames(r)[seq_len(k)], terms = colnames(r),
         values = lapply(seq_len(ncol(r)), function(j) r[seq_len(k), j]), cond_sd = sdv)
  })
  md <- lmer(f, data = d, REML = case$reml)
  out$default_optimizer <- list(loglik = num(logLik(md)), optimizer = md@optinfo$optimizer,
                                messages = as.list(md@optinfo$conv$lme4$messages))
  if (!is.null(case$emmeans)) {
    e <- case$emmeans
    spec <- paste("~", paste(unlist(e$specs), collapse = " + "))
    if (!is.null(e$by)) spec <- paste(spec, "|", paste(unlist(e$by), collapse = " + "))
    at <- lapply(e$at, function(v) unlist(v))
    em <- emmeans(m, as.formula(spec), at = at, lmer.df = "satterthwaite", lmerTest.limit = Inf)
    es <- as.data.frame(summary(em))
    out$emmeans <- list(call = sprintf("emmeans(m, %s, at = ..., lmer.df = 'satterthwaite')", spec),
                        table = es)
    pr <- as.data.frame(summary(pairs(em)))
    out$pairs <- list(call = "pairs(emm) (Tukey adjustment)", table = pr)
  }
  if (!is.null(case$lrt_small)) {
    m0 <- lmer(as.formula(case$lrt_small), data = d, REML = case$reml, control = ctrl)
    a <- anova(m0, m)
    out$lrt <- list(call = "anova(m_small, m)", loglik = num(a$logLik), npar = num(a$npar),
                    chisq = num(a$Chisq[2]), df = num(a$Df[2]), p = num(a[["Pr(>Chisq)"]][2]))
  }
  if (!is.null(case$f_test_prefix)) {
    nm <- names(fixef(m))
    idx <- which(startsWith(nm, case$f_test_prefix) & !grepl(":", nm))
    L <- diag(length(nm))[idx, , drop = FALSE]
    ct <- contest(m, L, joint = TRUE)
    out$f_test <- list(call = "contest(m, L, joint = TRUE)", coefficients = nm[idx], f = ct[["F value"]],
                       num_df = ct$NumDF, den_df = ct$DenDF, p = ct[["Pr(>F)"]])
  }
  writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE),
             file.path(here, paste0(case$name, ".json")))
  cat(case$name, "done\n")
}
