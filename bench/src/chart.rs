//! [`grouped_bars`]: the benchmark's chart, an SVG of grouped bars drawn
//! with plotters (no font files needed: SVG text is laid out by the viewer).

use std::path::Path;

use plotters::prelude::*;

/// Colors of the series, in order.
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws one group of bars per entry of `groups` (a label and one value per
/// series, in the order of `series`), each bar labelled with its value
/// followed by `unit`.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    unit: &str,
    series: &[&str],
    groups: &[(String, Vec<f64>)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = groups.iter().flat_map(|(_, values)| values.iter().copied()).fold(1.0, f64::max);
    let groups_n = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..groups_n, 0f64..top * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(0)
        // Ticks every half group, so that one lands in the middle of each.
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            // Labels sit at the middle of each group.
            let at = x.floor() as usize;
            match groups.get(at) {
                Some((label, _)) if (x - at as f64 - 0.5).abs() < 0.01 => label.clone(),
                _ => String::new(),
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}{unit}"))
        .draw()?;
    let width = 0.8 / series.len().max(1) as f64;
    for (k, name) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let bars = groups.iter().enumerate().filter_map(|(i, (_, values))| {
            let value = *values.get(k)?;
            let x0 = i as f64 + 0.1 + k as f64 * width;
            Some(Rectangle::new([(x0, 0.0), (x0 + width * 0.92, value)], color.filled()))
        });
        chart
            .draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let labels = groups.iter().enumerate().filter_map(|(i, (_, values))| {
            let value = *values.get(k)?;
            let x = i as f64 + 0.1 + (k as f64 + 0.1) * width;
            Some(Text::new(
                format!("{value:.1}{unit}"),
                (x, value + top * 0.02),
                ("sans-serif", 11),
            ))
        });
        chart.draw_series(labels)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(())
}
