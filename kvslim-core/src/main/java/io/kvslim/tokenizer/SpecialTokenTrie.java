package io.kvslim.tokenizer;

import java.util.BitSet;
import java.util.HashMap;
import java.util.Map;

/**
 * The texts of the special tokens in a trie, to find in one pass which of them occur in a text: a
 * vocabulary may have thousands of user-defined tokens, and searching each one separately through a
 * long text would dominate tokenization.
 */
final class SpecialTokenTrie {
  private final Node root = new Node();

  private static final class Node {
    final Map<Character, Node> children = new HashMap<>(4);
    int token = -1;
  }

  SpecialTokenTrie(String[] pieces, int[] tokens) {
    for (int id : tokens) {
      Node node = root;
      for (int i = 0; i < pieces[id].length(); i++) {
        node = node.children.computeIfAbsent(pieces[id].charAt(i), c -> new Node());
      }
      node.token = id;
    }
  }

  /** The ids of the tokens that occur somewhere in {@code text}. */
  BitSet occurring(String text) {
    BitSet found = new BitSet();
    for (int i = 0; i < text.length(); i++) {
      Node node = root;
      for (int j = i; j < text.length(); j++) {
        node = node.children.get(text.charAt(j));
        if (node == null) {
          break;
        }
        if (node.token >= 0) {
          found.set(node.token);
        }
      }
    }
    return found;
  }
}
