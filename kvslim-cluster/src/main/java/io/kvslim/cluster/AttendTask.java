package io.kvslim.cluster;

import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.core.HazelcastInstanceAware;
import com.hazelcast.nio.ObjectDataInput;
import com.hazelcast.nio.ObjectDataOutput;
import com.hazelcast.nio.serialization.DataSerializable;
import java.io.IOException;
import java.util.concurrent.Callable;

/**
 * Runs on the member that holds some of a layer's blocks (data-affine): appends the rows of those
 * blocks that arrived since the last step, checks that the member holds exactly the tokens the
 * coordinator placed there (a member that restarted or lost them fails the step instead of
 * answering from fewer tokens), and returns its partial attention ({@link
 * MemberBlocks.Layer#partial}).
 */
public final class AttendTask
    implements Callable<float[]>, DataSerializable, HazelcastInstanceAware {
  private transient HazelcastInstance instance;
  private String seq;
  private int layer;
  private int kvHeads;
  private int headDim;
  private int heldBefore;
  private int[] appendPositions;
  private float[] appendKeys;
  private float[] appendValues;
  private int[] queryPositions;
  private int heads;
  private float[] queries;
  private float scale;

  /** For deserialization. */
  public AttendTask() {}

  AttendTask(
      String seq,
      int layer,
      int kvHeads,
      int headDim,
      int heldBefore,
      int[] appendPositions,
      float[] appendKeys,
      float[] appendValues,
      int[] queryPositions,
      int heads,
      float[] queries,
      float scale) {
    this.seq = seq;
    this.layer = layer;
    this.kvHeads = kvHeads;
    this.headDim = headDim;
    this.heldBefore = heldBefore;
    this.appendPositions = appendPositions;
    this.appendKeys = appendKeys;
    this.appendValues = appendValues;
    this.queryPositions = queryPositions;
    this.heads = heads;
    this.queries = queries;
    this.scale = scale;
  }

  @Override
  public void setHazelcastInstance(HazelcastInstance instance) {
    this.instance = instance;
  }

  @Override
  public float[] call() {
    MemberBlocks store = (MemberBlocks) instance.getUserContext().get(MemberBlocks.KEY);
    if (store == null) {
      throw new IllegalStateException("this member was not started by kvslim and holds no blocks");
    }
    MemberBlocks.Layer l = store.layer(seq, layer, kvHeads, headDim);
    int held = l.count();
    if (held != heldBefore) {
      throw new IllegalStateException(
          "member holds "
              + held
              + " tokens of layer "
              + layer
              + " where "
              + heldBefore
              + " were placed");
    }
    if (appendPositions.length > 0) {
      l.append(appendPositions.length, appendPositions, appendKeys, appendValues);
    }
    return l.partial(queryPositions.length, queryPositions, heads, queries, scale);
  }

  @Override
  public void writeData(ObjectDataOutput out) throws IOException {
    out.writeString(seq);
    out.writeInt(layer);
    out.writeInt(kvHeads);
    out.writeInt(headDim);
    out.writeInt(heldBefore);
    out.writeIntArray(appendPositions);
    out.writeFloatArray(appendKeys);
    out.writeFloatArray(appendValues);
    out.writeIntArray(queryPositions);
    out.writeInt(heads);
    out.writeFloatArray(queries);
    out.writeFloat(scale);
  }

  @Override
  public void readData(ObjectDataInput in) throws IOException {
    seq = in.readString();
    layer = in.readInt();
    kvHeads = in.readInt();
    headDim = in.readInt();
    heldBefore = in.readInt();
    appendPositions = in.readIntArray();
    appendKeys = in.readFloatArray();
    appendValues = in.readFloatArray();
    queryPositions = in.readIntArray();
    heads = in.readInt();
    queries = in.readFloatArray();
    scale = in.readFloat();
  }

  /** Frees a sequence's blocks on the member it runs on. */
  public static final class Drop
      implements Callable<Boolean>, DataSerializable, HazelcastInstanceAware {
    private transient HazelcastInstance instance;
    private String seq;

    /** For deserialization. */
    public Drop() {}

    Drop(String seq) {
      this.seq = seq;
    }

    @Override
    public void setHazelcastInstance(HazelcastInstance instance) {
      this.instance = instance;
    }

    @Override
    public Boolean call() {
      Object store = instance.getUserContext().get(MemberBlocks.KEY);
      if (store instanceof MemberBlocks b) {
        b.drop(seq);
        return true;
      }
      return false;
    }

    @Override
    public void writeData(ObjectDataOutput out) throws IOException {
      out.writeString(seq);
    }

    @Override
    public void readData(ObjectDataInput in) throws IOException {
      seq = in.readString();
    }
  }
}
