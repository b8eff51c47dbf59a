//! `junit.xml`: one test case per expectation, for CI systems.

use super::markup::escape as esc;
use super::summary::Summary;

pub fn render(s: &Summary) -> String {
    let failures = s.expectations.iter().filter(|e| !e.passed).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out += &format!(
        "<testsuites>\n  <testsuite name=\"gameday.{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">\n",
        esc(&s.scenario), s.expectations.len(), failures, s.duration_s
    );
    for e in &s.expectations {
        out += &format!(
            "    <testcase classname=\"gameday.{}\" name=\"{}\">",
            esc(&s.scenario),
            esc(&e.rule)
        );
        if !e.passed {
            let observed = e
                .observed
                .map_or("no value".to_string(), |v| format!("{v:.3}{}", e.unit));
            out += &format!("<failure message=\"observed {}\"/>", esc(&observed));
        }
        out += "</testcase>\n";
    }
    if s.interrupted {
        out += "    <testcase classname=\"gameday\" name=\"run completed\"><failure message=\"interrupted\"/></testcase>\n";
    }
    out += "  </testsuite>\n</testsuites>\n";
    out
}
