"""The TensorFlow side of the VGGish fidelity test; runs in the TF venv (tensorflow + tf_slim + numpy only).

    python tf_vggish_official.py CHECKPOINT EXAMPLES.npy OUT_DIR SEED

1. Defines VGGish in graph mode exactly as tensorflow/models research/audioset/vggish/vggish_slim.py's
   `define_vggish_slim` (restated: scope 'vggish', slim.conv2d 3x3 stride 1 SAME + ReLU, slim.max_pool2d 2x2
   stride 2 SAME, conv1 64 | pool1 | conv2 128 | pool2 | repeat 2 conv3 256 | pool3 | repeat 2 conv4 512 |
   pool4 | slim.flatten | repeat 2 fully_connected 4096 'fc1' | fully_connected 128 'fc2' | identity
   'embedding'); fc2 keeps slim's default ReLU (the release before tensorflow/models PR #9080) or has
   activation_fn=None (after it).
2. Gives every variable seeded random values (He-normal weights, N(0, 0.1) biases: the release's
   N(0, 0.01) init would shrink activations to nothing) and saves them with a V1 Saver, the format of the
   released `vggish_model.ckpt` (`load_vggish_slim_checkpoint` uses write_version=1).
3. For both fc2 variants: a fresh graph, the variables restored from that file as
   `load_vggish_slim_checkpoint` does, `sess.run('vggish/embedding', {input_features: examples})`;
   writes OUT_DIR/embedding_fc2_relu.npy and OUT_DIR/embedding_fc2_linear.npy.
"""
import os
import sys

import numpy as np
import tensorflow.compat.v1 as tf
import tf_slim as slim

tf.disable_v2_behavior()
NUM_FRAMES, NUM_BANDS, EMBEDDING_SIZE = 96, 64, 128


def define_vggish_slim(fc2_relu):
    with slim.arg_scope([slim.conv2d, slim.fully_connected],
                        weights_initializer=tf.truncated_normal_initializer(stddev=0.01),
                        biases_initializer=tf.zeros_initializer(), activation_fn=tf.nn.relu, trainable=False), \
            slim.arg_scope([slim.conv2d], kernel_size=[3, 3], stride=1, padding="SAME"), \
            slim.arg_scope([slim.max_pool2d], kernel_size=[2, 2], stride=2, padding="SAME"), \
            tf.variable_scope("vggish"):
        features = tf.placeholder(tf.float32, shape=(None, NUM_FRAMES, NUM_BANDS), name="input_features")
        net = tf.reshape(features, [-1, NUM_FRAMES, NUM_BANDS, 1])
        net = slim.conv2d(net, 64, scope="conv1")
        net = slim.max_pool2d(net, scope="pool1")
        net = slim.conv2d(net, 128, scope="conv2")
        net = slim.max_pool2d(net, scope="pool2")
        net = slim.repeat(net, 2, slim.conv2d, 256, scope="conv3")
        net = slim.max_pool2d(net, scope="pool3")
        net = slim.repeat(net, 2, slim.conv2d, 512, scope="conv4")
        net = slim.max_pool2d(net, scope="pool4")
        net = slim.flatten(net)
        net = slim.repeat(net, 2, slim.fully_connected, 4096, scope="fc1")
        extra = {} if fc2_relu else {"activation_fn": None}
        net = slim.fully_connected(net, EMBEDDING_SIZE, scope="fc2", **extra)
        return features, tf.identity(net, name="embedding")


def main(checkpoint, examples_path, out_dir, seed):
    rng = np.random.default_rng(int(seed))
    with tf.Graph().as_default(), tf.Session() as sess:
        define_vggish_slim(fc2_relu=True)
        sess.run(tf.global_variables_initializer())
        for var in tf.global_variables():
            shape = var.shape.as_list()
            if var.name.endswith("weights:0"):
                fan_in = int(np.prod(shape[:-1]))
                value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            else:
                value = rng.standard_normal(shape) * 0.1
            var.load(value.astype(np.float32), sess)
        tf.train.Saver(write_version=tf.train.SaverDef.V1).save(sess, checkpoint, write_meta_graph=False)
    examples = np.load(examples_path)
    for fc2_relu, name in ((True, "relu"), (False, "linear")):
        with tf.Graph().as_default(), tf.Session() as sess:
            features, embedding = define_vggish_slim(fc2_relu)
            tf.train.Saver(tf.global_variables(), write_version=1).restore(sess, checkpoint)
            out = sess.run(embedding, feed_dict={features: examples})
        np.save(os.path.join(out_dir, f"embedding_fc2_{name}.npy"), out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
