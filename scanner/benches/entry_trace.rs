//! EntryTrace over hostile entrypoint scripts: each script is 1 MiB (the most the follower
//! reads) of one construct repeated — loops and `if`s never closed, long `&&`/`||` chains,
//! condition groups and groups after `||` never closed, functions as conditions, path
//! substitutions, a function of 1 MiB called (and asked for its status) again and again
//! — and ends with the `exec` the trace must still reach.
//! Reference, in the same run: parsing the same script (`shell::parse`), which the trace
//! does first, so the ratio is what following it adds. Each figure is the median of
//! `STELLAOPS_TRACE_ROUNDS` rounds (5 unless set).
//!
//! `cargo bench -p stellaops-scanner --bench entry_trace`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use stellaops_scanner::analyze::Node;
use stellaops_scanner::shell;
use stellaops_scanner::usage::{RunConfig, Vfs, trace};

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("STELLAOPS_TRACE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    // (name, what comes first, the line repeated, what comes after it).
    let calls = format!("}}\n{}", "f\n".repeat(300));
    let values: Vec<String> = (1..=64).map(|n| n.to_string()).collect();
    let wide_loop = format!(
        "for a in {}; do {} done\n",
        values.join(" "),
        ": x; ".repeat(200)
    );
    let conditions = format!("}}\n{}", "if f; then :; fi\n".repeat(300));
    let cases = [
        ("unclosed for loops", "", "for a in x; do\n", ""),
        ("unclosed while loops", "", "while [ -n x ]; do\n", ""),
        ("unclosed ifs", "", "if [ -f /run/x ]; then\n", ""),
        ("unclosed condition groups", "", "if { a; b;\n", ""),
        ("an && chain of tests", "", "[ a ] && ", ""),
        ("an || chain", "", "true || ", ""),
        (
            "unclosed groups after ||",
            "",
            "[ -f /run/x ] || { a;\n",
            "",
        ),
        (
            "loops run through",
            "",
            "for a in x y; do [ -n \"$a\" ] && continue; done\n",
            "",
        ),
        ("loops of 64 values", "", &wide_loop, ""),
        (
            "functions as conditions",
            "f() { [ \"$1\" = x ]; }\n",
            "f x && f y || f z\n",
            "",
        ),
        (
            "path substitutions",
            "",
            "D=\"$(cd \"$(dirname \"$(dirname \"$0\")\")\" && pwd -P)\"\n",
            "",
        ),
        (
            "nested substitutions",
            "",
            "D=$(dirname $(dirname $(dirname $(dirname $(dirname $(dirname \"$0\"))))))\n",
            "",
        ),
        (
            "programs in substitutions",
            "",
            "T=\"$(curl -s \"http://x/$1\" | jq -r .token)\"; V=`id -u`\n",
            "",
        ),
        (
            "here-document substitutions",
            "cat > /tmp/x <<EOF\n",
            "$(date) $(id -u) `hostname`\n",
            "EOF\n",
        ),
        ("arguments growing", "", "set -- x \"$@\"\n", ""),
        ("a variable growing", "", "X=\"$X x\"\n", ""),
        (
            "undecided assignments",
            "",
            "[ -f /run/x ] && APP=/usr/bin/other && set -- x \"$@\"\n",
            "exec $APP \"$@\"\n",
        ),
        ("a long function called", "f() {\n", ": x\n", &calls),
        (
            "a long function as condition",
            "f() {\n",
            ": x\n",
            &conditions,
        ),
    ];
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "script (1 MiB)", "trace", "parse", "ratio"
    );
    for (name, head, line, tail) in cases {
        let room = (1 << 20) - 64 - head.len() - tail.len() - 2;
        let mut body = format!("{head}{}{tail}", line.repeat(room / line.len()));
        body.push_str("exec /usr/bin/server\n");
        let text = format!("#!/usr/bin/bash\n{body}");
        assert!(text.len() <= shell::MAX_SCRIPT);
        let file = |exec: bool, text: Option<String>| Node::File {
            exec,
            elf: None,
            text,
        };
        let vfs = Vfs::from_nodes(BTreeMap::from([
            ("usr/bin/bash".to_string(), file(true, None)),
            ("usr/bin/server".to_string(), file(true, None)),
            ("entry.sh".to_string(), file(true, Some(text.clone()))),
        ]));
        let config = RunConfig {
            entrypoint: vec!["/entry.sh".into()],
            working_dir: "/".into(),
            ..RunConfig::default()
        };
        let mut traced = Vec::new();
        let mut parsed = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let t = trace(&vfs, &config);
            traced.push(started.elapsed());
            assert!(
                t.terminal().is_some() || !t.also_run.is_empty(),
                "{name}: nothing traced"
            );
            let started = Instant::now();
            let commands = shell::parse(&text).expect("the script parses");
            parsed.push(started.elapsed());
            assert!(!commands.is_empty());
        }
        let (traced, parsed) = (median(traced), median(parsed));
        println!(
            "{name:<28} {:>10.1}ms {:>10.1}ms {:>7.1}x",
            traced.as_secs_f64() * 1e3,
            parsed.as_secs_f64() * 1e3,
            traced.as_secs_f64() / parsed.as_secs_f64()
        );
    }
}
