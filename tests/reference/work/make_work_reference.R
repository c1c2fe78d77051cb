# Reference values for tests/models/test_work.py: the work-status GLMM
#   at_work ~ week + odi_10 + adherence_10 + (1 | episode_id)
# fitted by lme4::glmer (Laplace, nAGQ = 1, and adaptive Gauss-Hermite, nAGQ = 9; bobyqa) and by glmmTMB
# (its Laplace approximation is exact: TMB optimises the random effects to machine precision).
# Run from this folder after `python make_data.py`: Rscript make_work_reference.R -> work_reference.json
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(jsonlite)})

d <- read.csv("work_status.csv", stringsAsFactors = TRUE)
d$episode_id <- factor(d$episode_id)
f <- at_work ~ week + odi_10 + adherence_10 + (1 | episode_id)
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))

# the exact Laplace deviance at glmer's estimates (Newton per episode to machine precision): glmer's own
# nAGQ = 1 deviance uses PIRLS weights of an earlier iterate
exact_laplace <- function(m) {
  th <- getME(m, "theta"); eta0 <- as.numeric(getME(m, "X") %*% fixef(m))
  g <- as.integer(getME(m, "flist")[[1]]); y <- model.response(model.frame(m))
  h <- function(u) tapply(-dbinom(y, 1, plogis(eta0 + th * u[g]), log = TRUE), g, sum) + u^2 / 2
  u <- rep(0, max(g))
  for (it in 1:200) {  # Newton per episode with step halving (a full step can overshoot when theta is large)
    p <- plogis(eta0 + th * u[g]); w <- p * (1 - p)
    step <- (u - th * tapply(y - p, g, sum)) / (1 + th^2 * tapply(w, g, sum))
    t <- rep(1, length(u)); h0 <- h(u)
    for (k in 1:40) { worse <- h(u - t * step) > h0 + 1e-15 * abs(h0); if (!any(worse)) break; t[worse] <- t[worse] / 2 }
    u <- u - t * step
    if (max(abs(step)) < 1e-13) break
  }
  p <- plogis(eta0 + th * u[g]); w <- p * (1 - p)
  -2 * sum(dbinom(y, 1, p, log = TRUE)) + sum(u^2) + sum(log(1 + th^2 * tapply(w, g, sum)))
}

glmer_case <- function(nagq) {
  warn <- character(0)
  m <- withCallingHandlers(glmer(f, data = d, family = binomial, nAGQ = nagq, control = ctrl),
    warning = function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") })
  list(name = paste0("glmer_nagq", nagq), engine = "lme4::glmer", r_call = paste0(
         "glmer(at_work ~ week + odi_10 + adherence_10 + (1 | episode_id), family = binomial, nAGQ = ", nagq,
         ", control = glmerControl(optimizer = 'bobyqa'))"),
       nagq = nagq, fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       theta = unname(getME(m, "theta")), loglik = as.numeric(logLik(m)), nobs = nobs(m),
       n_groups = unname(ngrps(m)),
       exact_laplace_deviance_at_estimates = if (nagq == 1) exact_laplace(m) else NULL,
       warnings = warn)
}

tmb <- glmmTMB(f, data = d, family = binomial)
cases <- list(
  glmer_case(1),
  glmer_case(9),
  list(name = "glmmtmb_laplace", engine = "glmmTMB", nagq = 1,
       r_call = "glmmTMB(at_work ~ week + odi_10 + adherence_10 + (1 | episode_id), family = binomial)",
       fixef = as.list(fixef(tmb)$cond), se = as.list(sqrt(diag(vcov(tmb)$cond))),
       theta = unname(attr(VarCorr(tmb)$cond$episode_id, "stddev")), loglik = as.numeric(logLik(tmb)),
       nobs = nobs(tmb), conv_message = tmb$fit$message)
)
out <- list(data = "work_status.csv", formula = "at_work ~ week + odi_10 + adherence_10 + (1 | episode_id)",
            versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            glmmTMB = as.character(packageVersion("glmmTMB"))),
            cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null"), "work_reference.json")
