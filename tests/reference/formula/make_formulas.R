# Random formulas from a small grammar, with R's terms and model matrices, for tests/models/test_formula_r.py.
# Run from this directory: Rscript make_formulas.R  (writes data.csv and formulas.json)
# R 4.x, stats::terms.formula / stats::model.matrix, jsonlite.
suppressPackageStartupMessages(library(jsonlite))
set.seed(20261201)
n <- 40
data <- data.frame(
  y = round(rnorm(n), 6),
  x1 = round(rnorm(n, 10, 3), 6),
  x2 = round(runif(n, 1, 5), 6),
  f = sample(c("a", "b", "c"), n, replace = TRUE),
  g = sample(c("u", "v"), n, replace = TRUE),
  week = rep(c(0, 2, 6, 12, 26), length.out = n),
  stringsAsFactors = FALSE
)
write.csv(data, "data.csv", row.names = FALSE)
data <- read.csv("data.csv", stringsAsFactors = TRUE)

atoms <- c("x1", "x2", "f", "g", "week", "factor(week)", "I(x1^2)", "I(x1 * x2)", "log(x2)",
           "poly(x1, 2)", "poly(week, 2)", "scale(x2)", "I(week - 6)")
ops <- c("+", "*", ":", "/", "%in%", "-", "^")

gen <- function(depth) {
  if (depth == 0 || runif(1) < 0.3) return(sample(atoms, 1))
  op <- sample(ops, 1, prob = c(4, 4, 3, 1.5, 1, 1.5, 1))
  if (op == "^") {
    inner <- paste(gen(depth - 1), "+", gen(depth - 1))
    return(sprintf("(%s)^%d", inner, sample(2:3, 1)))
  }
  a <- gen(depth - 1)
  b <- gen(depth - 1)
  if (runif(1) < 0.3) a <- sprintf("(%s)", a)
  if (runif(1) < 0.3) b <- sprintf("(%s)", b)
  sep <- if (op %in% c(":", "^")) op else sprintf(" %s ", op)
  paste0(a, sep, b)
}

fixed <- c(
  "y ~ x1 + f * g", "y ~ x1 + f / g", "y ~ x1 - f * g", "y ~ f * g - f", "y ~ 0 + week * f",
  "y ~ 1 + week * f", "y ~ (x1 + f + g)^2", "y ~ f / g", "y ~ g %in% f", "y ~ x1 * f:g", "y ~ x1 - 1",
  "y ~ -1 + f", "y ~ 0 + f + 1", "y ~ factor(week)", "y ~ poly(x1, 2) * g", "y ~ scale(x1) + f",
  "y ~ 0 + x1:f + g", "y ~ 0 + x1:f + f:g", "y ~ g:f + f", "y ~ x1 + x1:f:g", "y ~ f:g"
)
formulas <- fixed
while (length(formulas) < 420) {
  rhs <- gen(sample(1:3, 1))
  r <- runif(1)
  if (r < 0.1) rhs <- paste("0 +", rhs) else if (r < 0.2) rhs <- paste(rhs, "- 1") else if (r < 0.25) rhs <- paste("1 +", rhs)
  formulas <- unique(c(formulas, paste("y ~", rhs)))
}

out <- list()
n_err <- 0
for (txt in formulas) {
  res <- tryCatch({
    f <- as.formula(txt)
    tt <- terms(f)
    labels <- attr(tt, "term.labels")
    mm <- model.matrix(f, data)
    if (ncol(mm) == 0 || ncol(mm) > 60) stop("skip")
    list(formula = txt, term_labels = I(labels), intercept = attr(tt, "intercept"),
         columns = I(colnames(mm)), matrix = mm)
  }, error = function(e) NULL, warning = function(w) NULL)
  if (is.null(res)) { n_err <- n_err + 1; next }
  out[[length(out) + 1]] <- res
}
# the model matrix itself for the first 60 formulas only (keeps the fixture small)
for (i in seq_along(out)) {
  if (i > 60) out[[i]]$matrix <- NULL else out[[i]]$matrix <- unname(lapply(seq_len(ncol(out[[i]]$matrix)), function(j) out[[i]]$matrix[, j]))
}
meta <- list(r_version = R.version.string, n_formulas = length(out), n_refused_by_r = n_err, cases = out)
writeLines(toJSON(meta, digits = NA, auto_unbox = TRUE, pretty = FALSE), "formulas.json")
cat("formulas:", length(out), " refused by R or skipped:", n_err, "\n")

# prediction on new data: poly() and scale() keep the training coefficients (makepredictcall), factor(week)
# keeps the training levels
pred_formula <- "y ~ poly(x1, 2) * g + scale(x2) + factor(week) + poly(week, 3)"
fit <- lm(as.formula(pred_formula), data)
newdata <- data.frame(x1 = c(0, 5, 10, 20), x2 = c(1, 2, 3, 6), g = c("u", "v", "v", "u"), week = c(0, 2, 12, 26))
tt <- delete.response(terms(fit))
xnew <- model.matrix(tt, model.frame(tt, newdata, xlev = fit$xlevels))
pred <- list(formula = pred_formula, newdata = newdata, columns = I(colnames(xnew)),
             matrix = unname(lapply(seq_len(ncol(xnew)), function(j) unname(xnew[, j]))))
writeLines(toJSON(pred, digits = NA, auto_unbox = TRUE, dataframe = "columns"), "predict.json")
