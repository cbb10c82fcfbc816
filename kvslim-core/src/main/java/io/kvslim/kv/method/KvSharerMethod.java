package io.kvslim.kv.method;

import static io.kvslim.kv.method.Knob.integer;

import io.kvslim.calibrate.CalibrationProfile;
import io.kvslim.calibrate.KvSharerSearch;
import java.util.List;
import java.util.Set;

/**
 * KVSharer (Yang et al. 2024, "KVSharer: Efficient Inference via Layer-Wise Dissimilar KV Cache
 * Sharing", arXiv:2410.18517 §3; METHODS.md S3): {@code layers} layers read the keys and values of
 * an earlier, dissimilar layer instead of computing and storing their own. The pairs come from the
 * calibration profile's KVSharer search ({@link KvSharerSearch}: layer pairs by descending distance
 * of their mean keys and values, each kept only if the final hidden states stay similar), the first
 * {@code layers} it accepted. At run time a shared layer computes its queries only and attends over
 * its source layer's storage, as the authors' attention does ({@code
 * llama_real_share/modeling_llama_kvsharer.py} lines 381–394: {@code past_key_value[
 * kv_usage_layer_ids]}); it holds no block, so the memory is really saved. The authors' layer still
 * computes its own key and value projections and drops them; here they are not computed.
 *
 * <p>It composes with storage formats (a shared layer reads its source's format) but not with
 * eviction, which would evict from a storage two layers read.
 */
public final class KvSharerMethod implements KvMethod {
  @Override
  public String name() {
    return "kvsharer";
  }

  @Override
  public Family family() {
    return Family.FORMAT;
  }

  @Override
  public String paper() {
    return "Yang et al. 2024, KVSharer: Efficient Inference via Layer-Wise Dissimilar KV Cache"
        + " Sharing, arXiv:2410.18517 §3";
  }

  @Override
  public String summary() {
    return "KVSharer: layers read a dissimilar earlier layer's KV (from the calibration search).";
  }

  @Override
  public List<Knob> knobs() {
    return List.of(
        integer("layers", "1", "layers that read another layer's keys and values").atLeast(0));
  }

  @Override
  public Set<Need> needs() {
    return Set.of(Need.CALIBRATION);
  }

  @Override
  public int[] layerMap(MethodCall c, PolicyContext ctx) {
    CalibrationProfile p = c.profileFor(ctx);
    CalibrationProfile.KvSharer s = p.kvSharer();
    String file = p.source() == null ? "the calibration profile" : p.source().toString();
    if (s == null) {
      throw new KvSpecException(
          file + " has no KVSharer search; make it again with 'kvslim calibrate'");
    }
    int n = c.integer("layers");
    if (n > s.accepted().length) {
      throw new KvSpecException(
          "kvsharer:layers="
              + n
              + " but the search in "
              + file
              + " accepted "
              + s.accepted().length
              + " (calibrate with a larger --kvsharer-layers, or share fewer)");
    }
    return KvSharerSearch.map(s.accepted(), n, ctx.layerCount());
  }

  @Override
  public List<String> benchmarkSpecs() {
    return List.of("kvsharer:layers=1", "kvsharer:layers=2");
  }

  @Override
  public String specKeeping(int tokens) {
    return "kvsharer:layers=0";
  }

  @Override
  public String specCompressing(int tokens) {
    return "kvsharer:layers=1";
  }
}
