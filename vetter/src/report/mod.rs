//! Reports of a verdict: terminal text, JSON, SARIF 2.1.0 and a self-contained HTML page.
