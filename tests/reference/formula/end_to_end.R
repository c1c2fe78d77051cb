# End-to-end reference for the formula grammar (issue 14): "covariates + arm * visit" fits with R's
# coefficients and -2 log-likelihood. Run from the repository root: Rscript tests/reference/formula/end_to_end.R
# Writes tests/reference/formula/end_to_end.json.
#   MMRM: nlme::gls(<formula>, correlation = corSymm / corCompSymm, weights = varIdent, method = "REML")
#   growth model: lme4::lmer(<formula>, REML = TRUE, control = lmerControl(optimizer = "bobyqa", rhoend = 1e-12))
suppressPackageStartupMessages({ library(nlme); library(lme4); library(jsonlite) })
mm <- "tests/reference/mmrm"; lm_dir <- "tests/reference/lmm"
ctl <- glsControl(maxIter = 1000, msMaxIter = 1000, tolerance = 1e-14, msTol = 1e-14, opt = "optim")
gls_case <- function(name, formula, csv, id, levels, structure) {
  d <- read.csv(file.path(mm, csv), stringsAsFactors = FALSE)
  d$visit <- factor(as.character(d$visit), levels = levels)
  d$vnum <- as.integer(d$visit); d$sid <- d[[id]]
  d <- d[order(d$sid, d$vnum), ]
  f <- as.formula(formula)
  corr <- if (structure == "us") corSymm(form = ~ vnum | sid) else corCompSymm(form = ~ 1 | sid)
  w <- if (structure == "us") varIdent(form = ~ 1 | visit) else NULL
  fit <- gls(f, data = d, correlation = corr, weights = w, method = "REML", control = ctl)
  list(name = name, model = "mmrm", formula = formula, data = csv, subject = id, visits = levels,
       covariance = structure, coef_names = names(coef(fit)), estimate = unname(coef(fit)),
       se = unname(sqrt(diag(vcov(fit)))), m2loglik = -2 * as.numeric(logLik(fit)),
       term_labels = attr(terms(f), "term.labels"))
}
lmer_case <- function(name, formula, csv) {
  d <- read.csv(file.path(lm_dir, csv), stringsAsFactors = FALSE)
  f <- as.formula(formula)
  fit <- lmer(f, data = d, REML = TRUE,
              control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-12)))
  list(name = name, model = "growth", formula = formula, data = csv, coef_names = names(fixef(fit)),
       estimate = unname(fixef(fit)), se = unname(sqrt(diag(as.matrix(vcov(fit))))),
       m2loglik = -2 * as.numeric(logLik(fit)))
}
cases <- list(
  gls_case("small4_trial", "y ~ sex + age + arm * visit", "small4.csv", "id", paste0("wk", c(4, 8, 12, 16)), "cs"),
  gls_case("synth_odi_baseline", "odi ~ baseline_odi + visit * group", "synth_odi.csv", "episode_id",
           c("w6", "w12", "w26"), "us"),
  lmer_case("growth_sex_week_group", "y ~ sex + week * group + (week | patient)", "factor_groups.csv"),
  lmer_case("growth_poly", "y ~ sex + poly(week, 2) * group + (week | patient)", "factor_groups.csv"),
  lmer_case("growth_no_intercept", "y ~ 0 + week * group + (week | patient)", "factor_groups.csv")
)
out <- list(r_version = R.version.string, nlme = as.character(packageVersion("nlme")),
            lme4 = as.character(packageVersion("lme4")), cases = cases)
writeLines(toJSON(out, digits = 15, auto_unbox = TRUE, pretty = TRUE), "tests/reference/formula/end_to_end.json")
for (c in cases) cat(c$name, length(c$coef_names), "coefficients, -2LL", format(c$m2loglik, digits = 12), "\n")
