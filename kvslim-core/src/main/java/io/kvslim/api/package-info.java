/**
 * kvslim's public API: run a GGUF model in-process with a compressible KV cache.
 *
 * <ol>
 *   <li>{@link io.kvslim.api.KvslimModel#load} maps a GGUF file and reads its tokenizer and chat
 *       template;
 *   <li>{@link io.kvslim.api.KvslimModel#newSession} makes a session with a KV config ({@link
 *       io.kvslim.api.KvConfig}: a spec text such as {@code "snapkv:budget=64 + q8_0"}, or its
 *       builder);
 *   <li>{@link io.kvslim.api.KvslimSession#generate} generates with {@link
 *       io.kvslim.api.GenerateOptions} (sampling, stop strings, max tokens), streaming each token
 *       to a {@link io.kvslim.api.TokenCallback}, and returns a {@link io.kvslim.api.Generation}
 *       with the text, the stop reason, the KV cache's bytes and per-step {@link
 *       io.kvslim.api.StepStats};
 *   <li>{@link io.kvslim.api.KvslimModel#chatPrompt} renders a conversation with the model's Jinja
 *       chat template;
 *   <li>closing the session frees its KV cache and threads; closing the model unmaps the file.
 * </ol>
 *
 * <p>Bad input (a missing file, an unknown KV method, a negative token count, a prompt longer than
 * the context) raises {@link io.kvslim.api.KvslimException} with a one-sentence message. Every
 * other package of kvslim is internal.
 */
package io.kvslim.api;
