#!/usr/bin/env python3
"""Oracle for Krippendorff's alpha: random reliability matrices (raters × units, values from a
small domain, some missing), alpha at every level of measurement from the `krippendorff`
package (Santiago Castro's implementation of Krippendorff 2011). Prints JSON:
{"cases": [{"data": [[value or null]], "nominal": a, "ordinal": a, "interval": a, "ratio": a}]}
(`null` where the package finds alpha undefined).

  python tests/reference/agreement_case.py [--cases 40] [--seed 0]
"""
import argparse
import json
import math

import krippendorff
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    cases = []
    for _ in range(a.cases):
        raters = int(rng.integers(2, 6))
        units = int(rng.integers(3, 30))
        domain = rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0], size=int(rng.integers(2, 6)), replace=False)
        data = rng.choice(domain, size=(raters, units))
        # raters tend to agree: copy the first rater's value with some probability
        agree = rng.random(size=(raters, units)) < rng.random()
        data = np.where(agree, data[0:1, :], data)
        data[rng.random(size=(raters, units)) < 0.15] = np.nan
        case = {"data": [[None if math.isnan(x) else float(x) for x in row] for row in data]}
        for level in ("nominal", "ordinal", "interval", "ratio"):
            try:
                v = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
                case[level] = None if math.isnan(v) else v
            except (ValueError, ZeroDivisionError):
                case[level] = None
        cases.append(case)
    print(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
