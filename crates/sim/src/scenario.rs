//! Scenarios: named, seeded simulation runs that write CSV tables and SVG plots and end with
//! one `key=value` headline line that scripts can compare.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// How a scenario run is parameterised from the command line.
#[derive(Clone, Debug, Default)]
pub struct ScenarioOpts {
    /// Number of nodes, if the user chose one (each scenario has its default).
    pub nodes: Option<usize>,
    /// The seed.
    pub seed: u64,
    /// Where CSV and plots go.
    pub out: PathBuf,
    /// Scenario-specific knobs (`servent sim run NAME --param key=value`); each scenario
    /// lists the keys it takes in [`Scenario::params`].
    pub params: BTreeMap<String, String>,
}

impl ScenarioOpts {
    /// Options with no parameters.
    pub fn new(nodes: Option<usize>, seed: u64, out: PathBuf) -> ScenarioOpts {
        ScenarioOpts {
            nodes,
            seed,
            out,
            params: BTreeMap::new(),
        }
    }

    /// Sets parameter `key` (builder style, for tests and the demo).
    pub fn with_param(mut self, key: &str, value: impl std::fmt::Display) -> ScenarioOpts {
        self.params.insert(key.to_string(), value.to_string());
        self
    }

    /// Parameter `key` parsed as `T`, or `default` when it was not given. A value that does
    /// not parse is an error naming the key.
    pub fn param<T>(&self, key: &str, default: T) -> Result<T, SimError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.params.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| SimError::BadParams(format!("--param {key}={v}: {e}"))),
        }
    }

    /// A boolean parameter: `true/false`, `on/off`, `yes/no`, `1/0`.
    pub fn param_bool(&self, key: &str, default: bool) -> Result<bool, SimError> {
        match self.params.get(key).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "true" | "on" | "yes" | "1" => Ok(true),
                "false" | "off" | "no" | "0" => Ok(false),
                _ => Err(SimError::BadParams(format!(
                    "--param {key}={v}: expected on/off, true/false, yes/no or 1/0"
                ))),
            },
        }
    }

    /// Fails on a parameter the scenario does not take (a typo must not run the default).
    pub fn check_params(&self, known: &[(&str, &str)]) -> Result<(), SimError> {
        for k in self.params.keys() {
            if !known.iter().any(|(n, _)| n == k) {
                let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                return Err(SimError::BadParams(if names.is_empty() {
                    format!("--param {k}: this scenario takes no parameters")
                } else {
                    format!(
                        "--param {k}: unknown; this scenario takes {}",
                        names.join(", ")
                    )
                }));
            }
        }
        Ok(())
    }
}

/// A simulation scenario.
pub trait Scenario {
    /// The name used by `servent sim run NAME`.
    fn name(&self) -> &'static str;
    /// One line for `servent sim list`.
    fn about(&self) -> &'static str;
    /// The `--param` keys it takes, with one line of help each (default: none).
    fn params(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Runs it.
    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError>;
}

/// What can go wrong running a scenario.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Writing CSV or plots failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("drawing {path}: {msg}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// Why.
        msg: String,
    },
    /// The scenario's parameters make no sense.
    #[error("bad scenario parameters: {0}")]
    BadParams(String),
    /// The scenario itself failed (a protocol did not converge, …).
    #[error("{0}")]
    Failed(String),
}

/// A table written as CSV.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// File stem (`<name>.csv`).
    pub name: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, already formatted.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table.
    pub fn new(name: &str, columns: &[&str]) -> Table {
        Table {
            name: name.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row of numbers.
    pub fn push(&mut self, row: &[f64]) {
        self.rows.push(row.iter().map(|v| fmt_num(*v)).collect());
    }

    /// Appends a row of text cells.
    pub fn push_text(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The CSV text.
    pub fn to_csv(&self) -> String {
        let mut s = self.columns.join(",");
        s.push('\n');
        for r in &self.rows {
            s.push_str(&r.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
            s.push('\n');
        }
        s
    }
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_string()
    }
}

/// Formats a number compactly (integers without a fraction).
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.4}")
    }
}

/// One named line in a plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
}

/// A line plot written as SVG.
#[derive(Clone, Debug, PartialEq)]
pub struct Plot {
    /// File stem (`<name>.svg`).
    pub name: String,
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Log-scale x axis (base 2 ticks for node counts).
    pub log_x: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// What a scenario produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Human-readable lines printed before the headline.
    pub lines: Vec<String>,
    /// Headline figures, printed last as one `key=value` line.
    pub headline: Vec<(String, String)>,
    /// CSV tables.
    pub tables: Vec<Table>,
    /// Plots.
    pub plots: Vec<Plot>,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            ..Report::default()
        }
    }

    /// Adds a headline figure.
    pub fn kv(&mut self, key: &str, value: impl std::fmt::Display) {
        self.headline.push((key.to_string(), value.to_string()));
    }

    /// The value of headline figure `key`, if the scenario reported it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headline
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Adds a line of prose.
    pub fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }

    /// The headline as one line: `key=value key=value ...`.
    pub fn headline_line(&self) -> String {
        let mut s = String::new();
        for (i, (k, v)) in self.headline.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            let _ = write!(s, "{k}={v}");
        }
        s
    }

    /// Writes every table and plot into `dir`; returns the paths written.
    #[allow(clippy::disallowed_methods)] // the report is the simulator's output, written by its caller
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, SimError> {
        std::fs::create_dir_all(dir).map_err(|source| SimError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut written = Vec::new();
        for t in &self.tables {
            let path = dir.join(format!("{}.csv", t.name));
            write_atomic(&path, t.to_csv().as_bytes())?;
            written.push(path);
        }
        for p in &self.plots {
            let path = dir.join(format!("{}.svg", p.name));
            let svg = render_svg(p).map_err(|msg| SimError::Plot {
                path: path.clone(),
                msg,
            })?;
            write_atomic(&path, svg.as_bytes())?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Writes a file through a temporary file and a rename, so a crash never leaves half a file.
#[allow(clippy::disallowed_methods)] // report output, not core state
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SimError> {
    let tmp = path.with_extension("tmp");
    let io = |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Renders a plot to SVG text. The legend sits in its own column right of the plot, so it
/// never covers a curve; a log2 x axis is labelled at whole powers only (no repeated ticks).
pub fn render_svg(p: &Plot) -> Result<String, String> {
    const LEGEND_W: u32 = 200;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720 + LEGEND_W, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (plot_area, legend_area) = root.split_horizontally(720);
        let pts = p.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0f64, f64::MIN);
        for &(x, y) in pts {
            let x = if p.log_x { x.max(1e-9).log2() } else { x };
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1, y1) = (0.0, 1.0, 1.0);
        }
        if p.log_x {
            // whole powers of two at both ends
            x0 = x0.floor();
            x1 = x1.ceil();
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        let y1 = y1 + (y1 - y0) * 0.05;
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(&p.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        let log_x = p.log_x;
        // on a log axis one label per whole power (at most 12)
        let x_labels = if log_x {
            let n = (x1 - x0) as usize + 1;
            let step = n.div_ceil(12).max(1);
            n.div_ceil(step)
        } else {
            10
        };
        chart
            .configure_mesh()
            .x_labels(x_labels)
            .x_desc(if log_x {
                format!("{} (log2)", p.x_label)
            } else {
                p.x_label.clone()
            })
            .y_desc(&p.y_label)
            .x_label_formatter(&|x| {
                if log_x {
                    if (x - x.round()).abs() < 1e-6 {
                        format!("2^{:.0}", x.round())
                    } else {
                        String::new()
                    }
                } else {
                    fmt_num(*x)
                }
            })
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in p.series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|&(x, y)| (if log_x { x.max(1e-9).log2() } else { x }, y))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(pts.into_iter().map(|xy| Circle::new(xy, 3, c.filled())))
                .map_err(|e| e.to_string())?;
        }
        // the legend, in its own column
        for (i, s) in p.series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let y = 50 + 22 * i as i32;
            legend_area
                .draw(&PathElement::new(vec![(4, y), (24, y)], c.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            legend_area
                .draw(&Circle::new((14, y), 3, c.filled()))
                .map_err(|e| e.to_string())?;
            let name: String = s.name.chars().take(26).collect();
            legend_area
                .draw(&Text::new(name, (30, y - 7), ("sans-serif", 13)))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read what the report wrote
mod tests {
    use super::*;

    #[test]
    fn report_writes_csv_and_svg_and_a_headline() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("report");
        let mut r = Report::new("t");
        r.kv("nodes", 10);
        r.kv("success", 0.5);
        let mut t = Table::new("t", &["x", "y"]);
        t.push(&[1.0, 2.5]);
        t.push_text(vec!["a,b".into(), "c".into()]);
        r.tables.push(t);
        r.plots.push(Plot {
            name: "t".into(),
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: true,
            series: vec![Series {
                name: "s".into(),
                points: vec![(2.0, 1.0), (8.0, 3.0)],
            }],
        });
        let files = r.write(&dir).unwrap();
        assert_eq!(files.len(), 2);
        let csv = std::fs::read_to_string(dir.join("t.csv")).unwrap();
        assert_eq!(csv, "x,y\n1,2.5000\n\"a,b\",c\n");
        let svg = std::fs::read_to_string(dir.join("t.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"));
        assert_eq!(r.headline_line(), "nodes=10 success=0.5");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The texts of an SVG's <text> elements.
    fn svg_texts(svg: &str) -> Vec<(f64, String)> {
        let mut out = Vec::new();
        for part in svg.split("<text").skip(1) {
            let x = part
                .split("x=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0);
            let body = part.split('>').nth(1).unwrap_or("");
            let t = body.split('<').next().unwrap_or("").trim().to_string();
            out.push((x, t));
        }
        out
    }

    #[test]
    fn a_log_axis_has_distinct_ticks_and_the_legend_is_off_the_data() {
        // the BitTorrent plot's case: N = 8 .. 100 on a log2 axis repeated 2^4 before
        let series = (0..4)
            .map(|i| Series {
                name: format!("N = 2^{}", 9 + i),
                points: [8.0, 10.0, 16.0, 20.0, 30.0, 50.0, 100.0]
                    .iter()
                    .map(|&x| (x, x * (i + 1) as f64))
                    .collect(),
            })
            .collect();
        let svg = render_svg(&Plot {
            name: "p".into(),
            title: "p".into(),
            x_label: "leechers".into(),
            y_label: "s".into(),
            log_x: true,
            series,
        })
        .unwrap();
        let texts = svg_texts(&svg);
        let ticks: Vec<&String> = texts
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.starts_with("2^") && !t.contains(' '))
            .collect();
        let distinct: std::collections::BTreeSet<&&String> = ticks.iter().collect();
        assert!(ticks.len() >= 3, "{ticks:?}");
        assert_eq!(distinct.len(), ticks.len(), "repeated ticks: {ticks:?}");
        // every legend entry is right of the plot area (x >= 720)
        let legend: Vec<&(f64, String)> = texts
            .iter()
            .filter(|(_, t)| t.starts_with("N = "))
            .collect();
        assert_eq!(legend.len(), 4);
        assert!(legend.iter().all(|(x, _)| *x >= 720.0), "{legend:?}");
    }
}
