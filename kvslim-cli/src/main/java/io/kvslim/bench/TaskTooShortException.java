package io.kvslim.bench;

/** A task cannot be laid out in the requested length; the run skips that setting. */
public final class TaskTooShortException extends IllegalArgumentException {
  public TaskTooShortException(String message) {
    super(message);
  }
}
