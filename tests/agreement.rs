//! Krippendorff's alpha against the `krippendorff` Python package
//! (tests/reference/agreement_case.py): 120 random reliability matrices with missing values,
//! every level of measurement, tolerance 1e-9; undefined cases agree too.

mod common;

use common::python_json;
use iw_lab::analysis::agreement::{krippendorff_alpha, Level};

#[test]
fn alpha_matches_the_krippendorff_package() {
    let script = common::repo().join("tests/reference/agreement_case.py");
    let mut checked = 0;
    for seed in 0..3 {
        let out = python_json(&[
            script.to_str().unwrap(),
            "--cases",
            "40",
            "--seed",
            &seed.to_string(),
        ]);
        for case in out["cases"].as_array().unwrap() {
            let data: Vec<Vec<Option<f64>>> = case["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64()).collect())
                .collect();
            for (name, level) in [
                ("nominal", Level::Nominal),
                ("ordinal", Level::Ordinal),
                ("interval", Level::Interval),
                ("ratio", Level::Ratio),
            ] {
                let ours = krippendorff_alpha(&data, level);
                let theirs = case[name].as_f64();
                match (ours, theirs) {
                    (Some(a), Some(b)) => {
                        assert!(
                            (a - b).abs() < 1e-9,
                            "{name} {data:?}: ours {a}, package {b}"
                        )
                    }
                    (None, None) => {}
                    (a, b) => panic!("{name} {data:?}: ours {a:?}, package {b:?}"),
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 480);
}
