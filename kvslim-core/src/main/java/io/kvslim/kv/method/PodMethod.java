package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.PodSimilarity;
import java.util.List;
import java.util.Set;

/**
 * POD, proximal tokens over distant tokens (Ma et al. 2024, "Compressing KV Cache for Long-Context
 * LLM Inference with Inter-Layer Attention Similarity", arXiv:2412.02252 v2 §3; METHODS.md S4):
 * consecutive layers are grouped (at most {@code group} per group) from the calibration profile's
 * similarity of their attention over distant tokens ({@link PodSimilarity#groups}, greedy over the
 * stored similarities, so any {@code group} works with one profile). In a query at position {@code
 * p}, tokens before {@code sinks} and the last {@code window} ({@code > p − window}) are proximal:
 * every layer scores them with its own keys and values. The other, distant, tokens are scored by
 * every layer of a group with its own queries against the keys of the group's first layer, and
 * weighted with the layer's own values (v2's key sharing), one softmax over both parts. The first
 * layer of a group stores everything; the others drop their keys of distant tokens, a block of 32
 * at a time as tokens leave the window ({@code io.kvslim.kv.cache.DistantKeyLayer}), so the saving
 * is about {@code (g − 1)/g} of the distant tokens' keys of each group of {@code g}.
 *
 * <p>Unverified (the authors' code is not public): the similarity measure (1 − Jensen-Shannon
 * divergence, {@link PodSimilarity}), the greedy grouping, and the defaults of {@code sinks} and
 * {@code window}. Not done: the paper's post-training that lets the model adapt to the shared keys;
 * quality here is that of the training-free form. During a prefill the layers compute and hold all
 * their keys until their attention, then drop the distant ones.
 */
public final class PodMethod implements KvMethod {
  @Override
  public String name() {
    return "pod";
  }

  @Override
  public Family family() {
    return Family.FORMAT;
  }

  @Override
  public String paper() {
    return "Ma et al. 2024, Compressing KV Cache for Long-Context LLM Inference with Inter-Layer"
        + " Attention Similarity (POD), arXiv:2412.02252 v2 §3";
  }

  @Override
  public String summary() {
    return "POD: groups of consecutive layers share the distant tokens' keys; proximal tokens stay"
        + " per layer.";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        integer("group", "2", "most layers per group sharing distant keys (1: none)").atLeast(1),
        integer("sinks", "16", "first tokens that stay proximal (unverified default)").atLeast(0),
        integer("window", "256", "latest tokens that stay proximal (unverified default)")
            .atLeast(1));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.CALIBRATION);
  }

  @Override
  public DistantKeys distantKeys(MethodCall c, PolicyContext ctx) {
    CalibrationProfile p = c.profileFor(ctx);
    CalibrationProfile.Pod pod = p.pod();
    if (pod == null) {
      String file = p.source() == null ? "the calibration profile" : p.source().toString();
      throw new KvSpecException(
          file + " has no POD similarities; make it again with 'kvslim calibrate'");
    }
    return new DistantKeys(
        PodSimilarity.groups(pod.similarity(), c.integer("group")),
        c.integer("sinks"),
        c.integer("window"));
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("pod:group=2", "pod:group=3");
  }

  @Override
  public String specKeeping(int tokens) {
    return "pod:window=" + Math.max(1, tokens);
  }

  @Override
  public String specCompressing(int tokens) {
    return "pod:sinks=0,window=" + Math.max(1, tokens / 4);
  }
}
