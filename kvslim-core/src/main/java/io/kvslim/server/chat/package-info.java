/**
 * Chat prompts: {@link io.kvslim.server.chat.ChatTemplate} runs a GGUF's {@code
 * tokenizer.chat_template} with HubSpot's Jinjava set up as Hugging Face transformers sets up
 * jinja2 ({@link io.kvslim.server.chat.JinjaChatTemplate}, with Python string methods and filters
 * in {@link io.kvslim.server.chat.PyStringMethods} and {@link io.kvslim.server.chat.PyFilters}); a
 * model without a template gets the marker-based ChatML of {@link
 * io.kvslim.server.chat.ChatFamily}.
 */
package io.kvslim.server.chat;
