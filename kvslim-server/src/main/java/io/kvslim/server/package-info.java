/**
 * The OpenAI-compatible HTTP server ({@code kvslim serve}, DESIGN.md §5).
 *
 * <p>{@link io.kvslim.server.OpenAiServer} (Javalin) parses and checks requests ({@link
 * io.kvslim.server.CompletionRequest}), turns chat messages into a prompt with the model's Jinja
 * chat template ({@link io.kvslim.chat.ChatTemplate}) and streams results; the {@link
 * io.kvslim.server.Scheduler} thread owns the engine and batches all running sequences
 * continuously; {@link io.kvslim.server.KvPlan} turns a request's {@code kv} spec into caches from
 * the shared, limited pool and an estimate of the bytes to reserve, which {@link
 * io.kvslim.server.Admission} reserves (the rule {@code kvslim bench throughput} admits by too);
 * {@link io.kvslim.server.ServerMetrics} exposes Prometheus metrics.
 *
 * <p>Request extensions: {@code kv} (KV spec for this request), {@code top_k}, {@code min_p},
 * {@code repeat_penalty}, {@code ignore_eos}, {@code return_token_ids} (the generated ids, per
 * choice or per chunk), {@code cache_chunks} with {@code cache_blend} (the prompt's documents as a
 * list of strings whose KV is stored and reused in any order, CacheBlend: {@link
 * io.kvslim.server.BlendPrompt}). Responses carry {@code kvslim_usage}: {@code kv}, {@code
 * kv_bytes} held when the sequence ended, {@code kv_bytes_peak}, and {@code compression_ratio}, the
 * bytes an F16 full cache of the same tokens would take ({@code tokens × layers × kvHeads × headDim
 * × 2 × 2}) divided by {@code kv_bytes}.
 *
 * <p>Defaults: {@code max_tokens} is 16 for completions (as in OpenAI's API) and, for chat, the
 * rest of the context, lowered so the request's KV estimate fits {@code --kv-memory}. Sampling
 * defaults to temperature 1, top-p 1, no top-k, min-p or penalty; temperature 0 is greedy.
 * Completion prompts are tokenized without special-token parsing (text is text); rendered chat
 * prompts with it, so template markers become their ids. Known limits: {@code n}, {@code logprobs},
 * {@code echo}, {@code best_of}, {@code suffix}, tools and non-zero frequency/presence penalties
 * are refused with a 400.
 *
 * <p>Robustness: a client that closes its connection cancels its sequence at once, streaming or
 * not, freeing its batch slot and KV memory ({@link io.kvslim.server.ClientWatch}); at most {@code
 * --queue} requests wait, whatever they wait for, then 429 with {@code Retry-After}; a connection
 * silent for {@code --idle-timeout} (between requests, or sending its request) is closed, a body
 * that stops coming answered 408, one cut short 400, one over 4 MiB 413; every error, Jetty's own
 * included, is OpenAI's JSON error object; an unknown {@code model} is a 404 {@code
 * model_not_found}.
 *
 * <p><b>Internal:</b> the server's classes are not a library API (that is {@code io.kvslim.api} in
 * kvslim-core); they may change in any release.
 */
package io.kvslim.server;
