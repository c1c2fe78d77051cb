# Which emmeans call gives the df (and SE) of sciatica_outcomes' GrowthModel.emmeans (Satterthwaite)?
# Run from the repository root:  Rscript tests/reference/lmm/emmeans_df.R   (writes emmeans_df.json)
# Only lme4 and emmeans are attached, as a user would type it (emmeans calls the installed lmerTest for
# Satterthwaite df and pbkrtest for Kenward-Roger). Fits as make_reference.R (bobyqa). Per case it records
#   readme:   the call the README gives, emmeans(m, specs, at = ..., lmer.df = "satterthwaite"), and pairs()
#   default:  emmeans(m, specs, at = ...): Kenward-Roger df and adjusted SE (pbkrtest installed, n <= 3000)
#   over_lmerTest_limit: lmer.df = "satterthwaite" with lmerTest.limit below n: emmeans switches to KR
#   over_both_limits:    both limits below n: asymptotic df (Inf)
# with emmeans' messages and the df method it reports.
suppressPackageStartupMessages({library(lme4); library(emmeans); library(jsonlite)})
here <- "tests/reference/lmm"
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                 lmerTest = as.character(packageVersion("lmerTest")),
                 pbkrtest = as.character(packageVersion("pbkrtest")),
                 emmeans = as.character(packageVersion("emmeans")),
                 lmer.df = get_emm_option("lmer.df"), pbkrtest.limit = get_emm_option("pbkrtest.limit"),
                 lmerTest.limit = get_emm_option("lmerTest.limit"))
quietly <- function(expr) {
  msgs <- character()
  value <- withCallingHandlers(expr, message = function(c) {
    msgs <<- c(msgs, trimws(conditionMessage(c))); invokeRestart("muffleMessage")
  })
  list(value = value, messages = msgs)
}
table_of <- function(call_text, res) {
  s <- summary(res$value)
  list(call = call_text, df_method = sub("^Degrees-of-freedom method: ", "",
                                          grep("^Degrees-of-freedom", attr(s, "mesg"), value = TRUE)),
       messages = as.list(res$messages), table = as.data.frame(s))
}
cases <- list(
  list(name = "unbalanced_missing", data = "unbalanced_odi.csv",
       formula = "y ~ week * adherence + age + (week | patient)", spec = "~ week", at = list(week = c(0, 6, 12, 26))),
  list(name = "factor_interaction", data = "factor_groups.csv", reference = list(group = "strength"),
       formula = "y ~ week * group + sex + (week | patient)", spec = "~ group | week", at = list(week = 12))
)
out <- list(versions = versions, cases = list())
for (case in cases) {
  d <- read.csv(file.path(here, case$data), stringsAsFactors = TRUE)
  if (!is.null(case$reference)) for (col in names(case$reference))
    d[[col]] <- relevel(d[[col]], ref = case$reference[[col]])
  m <- lmer(as.formula(case$formula), data = d, REML = TRUE, control = ctrl)
  n <- nobs(m)
  spec <- as.formula(case$spec)
  at_text <- paste0("list(", names(case$at), " = c(", paste(case$at[[1]], collapse = ", "), "))")
  call <- function(extra) sprintf("emmeans(m, %s, at = %s%s)", case$spec, at_text, extra)
  readme <- quietly(emmeans(m, spec, at = case$at, lmer.df = "satterthwaite"))
  res <- list(
    case = case$name, formula = case$formula, nobs = n,
    readme = table_of(call(', lmer.df = "satterthwaite"'), readme),
    readme_pairs = list(call = "pairs(<readme>)", table = as.data.frame(summary(pairs(readme$value)))),
    default = table_of(call(""), quietly(emmeans(m, spec, at = case$at))),
    over_lmerTest_limit = table_of(
      call(sprintf(', lmer.df = "satterthwaite", lmerTest.limit = %d', n - 1L)),
      quietly(emmeans(m, spec, at = case$at, lmer.df = "satterthwaite", lmerTest.limit = n - 1L))),
    over_both_limits = table_of(
      call(sprintf(', lmer.df = "satterthwaite", lmerTest.limit = %d, pbkrtest.limit = %d', n - 1L, n - 1L)),
      quietly(emmeans(m, spec, at = case$at, lmer.df = "satterthwaite",
                      lmerTest.limit = n - 1L, pbkrtest.limit = n - 1L)))
  )
  out$cases[[case$name]] <- res
  cat(case$name, "done\n")
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE),
           file.path(here, "emmeans_df.json"))
