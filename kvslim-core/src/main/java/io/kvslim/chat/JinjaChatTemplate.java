package io.kvslim.chat;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.el.ext.ExtendedParser;
import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.InterpreterFactory;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import java.time.Clock;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import jinjava.javax.el.CompositeELResolver;

/**
 * Runs a Hugging Face chat template (the GGUF's {@code tokenizer.chat_template}, Jinja) with
 * HubSpot's Jinjava, set up like the environment transformers renders chat templates in ({@code
 * utils/chat_template_utils.py}, {@code _compile_jinja_template}: jinja2's sandbox with {@code
 * trim_blocks=True}, {@code lstrip_blocks=True}, the loop-controls extension, the globals {@code
 * raise_exception} and {@code strftime_now}, and {@code tojson} overridden by {@code json.dumps}).
 * The variables are those {@code apply_chat_template} passes: {@code messages}, {@code tools} and
 * {@code documents} (none), {@code add_generation_prompt}, {@code bos_token}, {@code eos_token}.
 *
 * <p>What Jinjava needed to render these templates as jinja2 does:
 *
 * <ul>
 *   <li>Python {@code str} methods ({@code .strip()}, {@code .startswith()}, {@code .title()},
 *       {@code .split()}...) through {@link PyStringMethods}, an EL resolver ahead of Jinjava's;
 *   <li>{@code raise_exception(msg)} and {@code strftime_now(fmt)} as global functions;
 *   <li>the {@code tojson} and {@code trim} filters replaced by Python's semantics ({@link
 *       PyFilters}: {@code json.dumps} spacing, Python whitespace);
 *   <li>booleans printed {@code True}/{@code False}, as Python does;
 *   <li>Jinjava's legacy overrides that make it follow jinja2 (operator precedence, whitespace
 *       control, backslash escapes in string literals, iteration over dict keys, no trailing
 *       newline).
 * </ul>
 *
 * {@code namespace()}, {@code loop.*}, {@code {% break %}}/{@code {% continue %}}, slices, {@code
 * selectattr}, {@code dict.items()}/{@code .get()} are Jinjava's own.
 */
final class JinjaChatTemplate {
  /** The message of a {@code raise_exception} call during the render on this thread. */
  private static final ThreadLocal<String> RAISED = new ThreadLocal<>();

  private static final long MAX_OUTPUT_CHARS = 64L << 20;

  /** The clock of {@code strftime_now}; tests fix it. */
  static volatile Clock clock = Clock.systemDefaultZone();

  private final String source;
  private final String bosToken;
  private final String eosToken;
  private final Jinjava jinjava;

  JinjaChatTemplate(String source, String bosToken, String eosToken) {
    this.source = jinja2Source(source);
    this.bosToken = bosToken;
    this.eosToken = eosToken;
    CompositeELResolver resolver = new CompositeELResolver();
    resolver.add(new PyStringMethods());
    resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
    LegacyOverrides jinja2Like =
        LegacyOverrides.newBuilder()
            .withEvaluateMapKeys(true)
            .withIterateOverMapKeys(true)
            .withUseNaturalOperatorPrecedence(true)
            .withParseWhitespaceControlStrictly(true)
            .withAllowAdjacentTextNodes(true)
            .withUseTrimmingForNotesAndExpressions(true)
            .withKeepNullableLoopValues(true)
            .withHandleBackslashInQuotesOnly(true)
            .build();
    JinjavaConfig config =
        JinjavaConfig.newBuilder()
            .withTrimBlocks(true)
            .withLstripBlocks(true)
            .withKeepTrailingNewline(true)
            .withFailOnUnknownTokens(false)
            .withElResolver(resolver)
            .withLegacyOverrides(jinja2Like)
            .withMaxOutputSize(MAX_OUTPUT_CHARS)
            .withInterperterFactory(new PythonOutput())
            .build();
    jinjava = new Jinjava(config);
    jinjava.getGlobalContext().registerFilter(new PyFilters.ToJson());
    jinjava.getGlobalContext().registerFilter(new PyFilters.Trim());
    jinjava
        .getGlobalContext()
        .registerFunction(
            new ELFunctionDefinition(
                "", "raise_exception", JinjaChatTemplate.class, "raiseException", Object.class));
    jinjava
        .getGlobalContext()
        .registerFunction(
            new ELFunctionDefinition(
                "", "strftime_now", JinjaChatTemplate.class, "strftimeNow", String.class));
  }

  /**
   * The source as jinja2's lexer reads it: line breaks written as {@code \n}, and one line break at
   * the very end dropped ({@code keep_trailing_newline=False}). Jinjava's own option strips the
   * rendered output's last line break instead, which is not the same.
   */
  static String jinja2Source(String source) {
    String s = source.replace("\r\n", "\n").replace('\r', '\n');
    return s.endsWith("\n") ? s.substring(0, s.length() - 1) : s;
  }

  /**
   * The prompt for {@code messages}.
   *
   * @throws ChatTemplateException if the template calls {@code raise_exception} (the messages are
   *     not what the model accepts) or cannot be rendered
   */
  String render(List<ChatTemplate.Message> messages, boolean addGenerationPrompt) {
    List<Map<String, Object>> list = new ArrayList<>(messages.size());
    for (ChatTemplate.Message m : messages) {
      Map<String, Object> map = new LinkedHashMap<>();
      map.put("role", m.role());
      map.put("content", m.content());
      list.add(map);
    }
    Map<String, Object> vars = new HashMap<>();
    vars.put("messages", list);
    vars.put("tools", null);
    vars.put("documents", null);
    vars.put("add_generation_prompt", addGenerationPrompt);
    if (bosToken != null) {
      vars.put("bos_token", bosToken);
    }
    if (eosToken != null) {
      vars.put("eos_token", eosToken);
    }
    RAISED.remove();
    RenderResult result = jinjava.renderForResult(source, vars);
    String raised = RAISED.get();
    RAISED.remove();
    if (raised != null) {
      throw new ChatTemplateException(
          true, "the model's chat template rejects these messages: " + raised);
    }
    for (String used : result.getContext().getResolvedValues()) {
      // Jinjava applies an unknown filter as "none"; jinja2 refuses the template
      if (used.startsWith(ExtendedParser.FILTER_PREFIX)
          && result.getContext().getFilter(used.substring(ExtendedParser.FILTER_PREFIX.length()))
              == null) {
        throw new ChatTemplateException(
            false,
            "the model's chat template failed to render: it uses the filter '"
                + used.substring(ExtendedParser.FILTER_PREFIX.length())
                + "', which Jinjava does not have");
      }
    }
    for (TemplateError e : result.getErrors()) {
      if (e.getSeverity() == TemplateError.ErrorType.FATAL) {
        throw new ChatTemplateException(
            false,
            "the model's chat template failed to render (line "
                + e.getLineno()
                + "): "
                + e.getMessage());
      }
    }
    return result.getOutput();
  }

  /**
   * {@code raise_exception(message)}: fails the render with the template's own sentence. Jinjava
   * records the exception and renders on, so the first message is kept, as jinja2 stops there.
   */
  public static Object raiseException(Object message) {
    String text = String.valueOf(message);
    if (RAISED.get() == null) {
      RAISED.set(text);
    }
    throw new IllegalStateException(text);
  }

  /** {@code strftime_now(format)}: the local time formatted with Python's strftime codes. */
  public static String strftimeNow(String format) {
    return strftime(ZonedDateTime.now(clock), format);
  }

  /** Python's {@code strftime} directives in the C locale; others are kept as written. */
  static String strftime(ZonedDateTime t, String format) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < format.length(); i++) {
      char c = format.charAt(i);
      if (c != '%' || i + 1 == format.length()) {
        sb.append(c);
        continue;
      }
      char d = format.charAt(++i);
      String pattern =
          switch (d) {
            case 'd' -> "dd";
            case 'm' -> "MM";
            case 'Y' -> "yyyy";
            case 'y' -> "yy";
            case 'H' -> "HH";
            case 'I' -> "hh";
            case 'M' -> "mm";
            case 'S' -> "ss";
            case 'b' -> "MMM";
            case 'B' -> "MMMM";
            case 'a' -> "EEE";
            case 'A' -> "EEEE";
            case 'j' -> "DDD";
            case 'p' -> "a";
            default -> null;
          };
      if (d == '%') {
        sb.append('%');
      } else if (pattern == null) {
        sb.append('%').append(d);
      } else {
        sb.append(DateTimeFormatter.ofPattern(pattern, Locale.ENGLISH).format(t));
      }
    }
    return sb.toString();
  }

  /** Interpreters that print booleans as Python does ({@code True}, {@code False}). */
  private static final class PythonOutput implements InterpreterFactory {
    @Override
    public JinjavaInterpreter newInstance(JinjavaInterpreter orig) {
      return new Interpreter(orig);
    }

    @Override
    public JinjavaInterpreter newInstance(
        Jinjava application, Context context, JinjavaConfig renderConfig) {
      return new Interpreter(application, context, renderConfig);
    }
  }

  private static final class Interpreter extends JinjavaInterpreter {
    Interpreter(JinjavaInterpreter orig) {
      super(orig);
    }

    Interpreter(Jinjava application, Context context, JinjavaConfig config) {
      super(application, context, config);
    }

    @Override
    public String getAsString(Object object) {
      if (object instanceof Boolean b) {
        return b ? "True" : "False";
      }
      return super.getAsString(object);
    }
  }
}
