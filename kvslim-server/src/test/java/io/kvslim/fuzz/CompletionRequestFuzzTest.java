package io.kvslim.fuzz;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.kvslim.server.ApiException;
import io.kvslim.server.CompletionRequest;
import java.nio.charset.StandardCharsets;

/**
 * Coverage-guided fuzzing of the OpenAI request parser, {@link CompletionRequest#parse} (Jazzer),
 * without a server: the first byte picks the endpoint (odd: chat completions, even: completions),
 * the rest is the body. Any JSON body either becomes a request or fails with a 4xx {@link
 * ApiException} whose message is one sentence; anything else is a finding. Bodies that are not JSON
 * are Jackson's to reject and are skipped. Seeds: request bodies of both endpoints, prefixed {@code
 * c} (chat) or {@code p} (completions).
 */
class CompletionRequestFuzzTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  @FuzzTest(maxDuration = "60s")
  void parse(byte[] data) {
    if (data.length == 0) {
      return;
    }
    boolean chat = (data[0] & 1) == 1;
    JsonNode body;
    try {
      body = JSON.readTree(new String(data, 1, data.length - 1, StandardCharsets.UTF_8));
    } catch (JsonProcessingException e) {
      return;
    }
    try {
      CompletionRequest r = CompletionRequest.parse(body, chat);
      assertThat(r.chat()).isEqualTo(chat);
      assertThat(r.sampling()).isNotNull();
    } catch (ApiException e) {
      assertThat(e.status()).isBetween(400, 499);
      FuzzChecks.assertHasMessage(e);
    }
  }
}
