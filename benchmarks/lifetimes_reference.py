"""Figures of the reference library `lifetimes` on the CDNOW sample, printed as JSON: run by
its own Python (`bash benchmarks/setup-lifetimes.sh`, then
`.venv-lifetimes/bin/python benchmarks/lifetimes_reference.py [CDNOW_sample.txt]`).

The analytics tests pin these numbers (tests/analytics/test_reference.py); rerun this
script to see where they come from. Calibration ends 1997-09-30, the holdout 1998-06-30,
times in weeks of 7 days (the papers' convention).
"""

import json
import sys
import warnings

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter  # noqa: E402
from lifetimes.utils import calibration_and_holdout_data  # noqa: E402

path = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/cdnow/CDNOW_sample.txt"
rows = pd.read_csv(path, sep=r"\s+", header=None, names=["full", "id", "date", "cds", "dollars"])
rows["date"] = pd.to_datetime(rows["date"].astype(str), format="%Y%m%d")
data = calibration_and_holdout_data(rows, "id", "date", calibration_period_end="1997-09-30",
                                    observation_period_end="1998-06-30", freq="D", freq_multiplier=7)
x, tx, T = data["frequency_cal"], data["recency_cal"], data["T_cal"]

bg = BetaGeoFitter().fit(x, tx, T)
pareto = ParetoNBDFitter().fit(x, tx, T)
# Gamma-Gamma on the calibration mean repeat spend (per day: the CDNOW rule)
daily = rows[rows["date"] <= "1997-09-30"].groupby(["id", "date"])["dollars"].sum().reset_index()
first = daily.groupby("id")["date"].transform("min")
repeat = daily[daily["date"] > first].groupby("id")["dollars"].mean()
zbar = repeat.reindex(data.index).fillna(0.0)
keep = (x > 0) & (zbar > 0)
gg = GammaGammaFitter().fit(x[keep], zbar[keep])

duration = float(data["duration_holdout"].iloc[0])
data["model"] = bg.conditional_expected_number_of_purchases_up_to_time(duration, x, tx, T)
table = data.groupby("frequency_cal")[["frequency_holdout", "model"]].agg(["mean", "count"])
calibration_holdout = {
    int(k): {"customers": int(row[("model", "count")]), "actual": float(row[("frequency_holdout", "mean")]),
             "expected": float(row[("model", "mean")])}
    for k, row in table.iloc[:7].iterrows()
}


def summary(fitter):
    s = fitter.summary
    return {name: {"estimate": float(s.loc[name, "coef"]), "se": float(s.loc[name, "se(coef)"])}
            for name in s.index}


print(json.dumps({
    "bg_nbd": summary(bg),
    "pareto_nbd": {k: float(v) for k, v in pareto.params_.items()},
    "gamma_gamma": summary(gg),
    "p_n_purchases": {str(t): [float(bg.probability_of_n_purchases_up_to_time(t, n)) for n in range(11)]
                      for t in (39.0, 78.0)},
    "duration_holdout": duration,
    "calibration_holdout": calibration_holdout,
    "expected_purchases_holdout_first5": [float(v) for v in np.asarray(data["model"])[:5]],
}, indent=1))
