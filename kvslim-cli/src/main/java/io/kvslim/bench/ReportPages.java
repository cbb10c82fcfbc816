package io.kvslim.bench;

import java.util.Base64;
import java.util.List;

/**
 * Renders a {@link ReportWriter}'s sections (tables, notes and charts, in order) as {@code
 * report.md} and {@code report.html}.
 */
final class ReportPages {
  private ReportPages() {}

  /** The report as Markdown; charts are linked from {@code charts/}. */
  static String markdown(List<Object> sections) {
    StringBuilder sb = new StringBuilder("# kvslim bench report\n\n");
    for (Object s : sections) {
      switch (s) {
        case String text -> sb.append("> ").append(text).append("\n\n");
        case ReportWriter.Table t -> {
          sb.append("## ").append(t.title()).append("\n\n");
          sb.append("| ").append(String.join(" | ", t.header())).append(" |\n");
          sb.append("|").append("---|".repeat(t.header().size())).append('\n');
          for (List<String> row : t.rows()) {
            sb.append("| ").append(String.join(" | ", row).replace("\n", " ")).append(" |\n");
          }
          sb.append('\n');
        }
        case Charts.Saved c ->
            sb.append("![")
                .append(c.title())
                .append("](charts/")
                .append(c.name())
                .append(".png) ([svg](charts/")
                .append(c.name())
                .append(".svg))\n\n");
        default -> throw new IllegalStateException("unknown section " + s);
      }
    }
    return sb.toString();
  }

  private static String esc(String s) {
    return s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\"", "&quot;");
  }

  /** The report as one HTML page; charts are embedded as PNG data. */
  static String html(List<Object> sections) {
    StringBuilder sb =
        new StringBuilder(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                + "<title>kvslim bench report</title><style>"
                + "body{font-family:sans-serif;margin:2em;max-width:1100px}"
                + "table{border-collapse:collapse;margin:1em 0}"
                + "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
                + "td:first-child,th:first-child{text-align:left}"
                + "blockquote{background:#fff8e1;padding:.5em 1em;border-left:4px solid #f0b400}"
                + "img{max-width:100%;display:block;margin:1em 0}"
                + "</style></head><body>\n<h1>kvslim bench report</h1>\n");
    for (Object s : sections) {
      switch (s) {
        case String text -> sb.append("<blockquote>").append(esc(text)).append("</blockquote>\n");
        case ReportWriter.Table t -> {
          sb.append("<h2>").append(esc(t.title())).append("</h2>\n<table><tr>");
          for (String h : t.header()) {
            sb.append("<th>").append(esc(h)).append("</th>");
          }
          sb.append("</tr>\n");
          for (List<String> row : t.rows()) {
            sb.append("<tr>");
            for (String c : row) {
              sb.append("<td>").append(esc(c)).append("</td>");
            }
            sb.append("</tr>\n");
          }
          sb.append("</table>\n");
        }
        case Charts.Saved c ->
            sb.append("<img alt=\"")
                .append(esc(c.title()))
                .append("\" src=\"data:image/png;base64,")
                .append(Base64.getEncoder().encodeToString(c.png()))
                .append("\">\n");
        default -> throw new IllegalStateException("unknown section " + s);
      }
    }
    return sb.append("</body></html>\n").toString();
  }
}
