package io.kvslim.bench;

import java.awt.Color;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.HeatMapChart;
import org.knowm.xchart.HeatMapChartBuilder;
import org.knowm.xchart.VectorGraphicsEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.internal.chartpart.Chart;
import org.knowm.xchart.style.markers.SeriesMarkers;

/** The report's charts, drawn with XChart and saved as PNG and SVG. */
public final class Charts {
  static {
    System.setProperty("java.awt.headless", "true");
  }

  private Charts() {}

  /** A chart written to disk: its base name and the PNG bytes (for embedding). */
  public record Saved(String name, String title, byte[] png) {}

  /** Lines with markers: one series per entry, each {x[], y[]} sorted by x. */
  public static XYChart lines(
      String title, String xTitle, String yTitle, Map<String, double[][]> series, boolean logX) {
    XYChart c =
        new XYChartBuilder()
            .width(800)
            .height(480)
            .title(title)
            .xAxisTitle(xTitle)
            .yAxisTitle(yTitle)
            .build();
    c.getStyler().setDefaultSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Line);
    c.getStyler().setXAxisLogarithmic(logX);
    c.getStyler().setChartBackgroundColor(Color.WHITE);
    for (Map.Entry<String, double[][]> e : series.entrySet()) {
      double[] x = e.getValue()[0];
      double[] y = e.getValue()[1];
      if (x.length == 0) {
        continue;
      }
      XYSeries s = c.addSeries(e.getKey(), x, y);
      s.setMarker(SeriesMarkers.CIRCLE);
    }
    return c;
  }

  /** A heat map of accuracies values[row][col] (rows bottom to top as given), 0..1 colour scale. */
  public static HeatMapChart heatMap(
      String title,
      String xTitle,
      String yTitle,
      List<String> columns,
      List<String> rows,
      double[][] values) {
    return heatMap(title, xTitle, yTitle, columns, rows, values, "accuracy");
  }

  /** A heat map of {@code what} in values[row][col] (rows bottom to top), 0..1 colour scale. */
  public static HeatMapChart heatMap(
      String title,
      String xTitle,
      String yTitle,
      List<String> columns,
      List<String> rows,
      double[][] values,
      String what) {
    HeatMapChart c =
        new HeatMapChartBuilder()
            .width(640)
            .height(420)
            .title(title)
            .xAxisTitle(xTitle)
            .yAxisTitle(yTitle)
            .build();
    c.getStyler().setShowValue(true);
    c.getStyler().setMin(0);
    c.getStyler().setMax(1);
    c.getStyler().setChartBackgroundColor(Color.WHITE);
    c.getStyler()
        .setRangeColors(
            new Color[] {new Color(0xd7301f), new Color(0xfee08b), new Color(0x1a9850)});
    List<Number[]> cells = new ArrayList<>();
    for (int r = 0; r < rows.size(); r++) {
      for (int k = 0; k < columns.size(); k++) {
        double v = values[r][k];
        if (!Double.isNaN(v)) {
          cells.add(new Number[] {k, r, v});
        }
      }
    }
    c.addSeries(what, columns, rows, cells);
    return c;
  }

  /** Saves {@code dir/name.png} and {@code dir/name.svg}; returns the PNG bytes. */
  public static Saved save(Chart<?, ?> chart, Path dir, String name, String title)
      throws IOException {
    Files.createDirectories(dir);
    ByteArrayOutputStream png = new ByteArrayOutputStream();
    BitmapEncoder.saveBitmap(chart, png, BitmapEncoder.BitmapFormat.PNG);
    Files.write(dir.resolve(name + ".png"), png.toByteArray());
    try (OutputStream svg = Files.newOutputStream(dir.resolve(name + ".svg"))) {
      VectorGraphicsEncoder.saveVectorGraphic(
          chart, svg, VectorGraphicsEncoder.VectorGraphicsFormat.SVG);
    }
    return new Saved(name, title, png.toByteArray());
  }
}
