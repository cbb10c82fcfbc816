/**
 * LangChain4j integration: {@link io.kvslim.langchain4j.KvslimChatModel} and {@link
 * io.kvslim.langchain4j.KvslimStreamingChatModel} run a GGUF model in-process with kvslim's
 * compressible KV cache, for {@code AiServices} and anything else that takes a LangChain4j chat
 * model.
 */
package io.kvslim.langchain4j;
