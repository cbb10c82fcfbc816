/**
 * Chat prompts: {@link io.kvslim.chat.ChatTemplate} runs a GGUF's {@code tokenizer.chat_template}
 * with HubSpot's Jinjava set up as Hugging Face transformers sets up jinja2 ({@link
 * io.kvslim.chat.JinjaChatTemplate}, with Python string methods and filters in {@link
 * io.kvslim.chat.PyStringMethods} and {@link io.kvslim.chat.PyFilters}); a model without a template
 * gets the marker-based ChatML of {@link io.kvslim.chat.ChatFamily}.
 *
 * <p><b>Internal:</b> not part of kvslim's public API, which is {@link io.kvslim.api}; it may
 * change in any release.
 */
package io.kvslim.chat;
