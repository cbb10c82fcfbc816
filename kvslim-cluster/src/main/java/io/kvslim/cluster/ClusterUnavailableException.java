package io.kvslim.cluster;

import io.kvslim.kv.KvUnavailableException;

/**
 * A cluster member holding KV blocks of a sequence left, lost them, failed, or did not answer in
 * time: the step is not computed (never from a partial cache), and the sequence cannot go on.
 */
public final class ClusterUnavailableException extends KvUnavailableException {
  public ClusterUnavailableException(String message) {
    super(message);
  }

  public ClusterUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
