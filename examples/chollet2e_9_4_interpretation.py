"""Deep Learning with Python, 2nd edition, section 9.4 (interpreting what convnets learn):
intermediate activations, filter patterns by gradient ascent in input space, and Grad-CAM,
with only the imports changed and TensorFlow's few functions replaced by convlab's.

    from tensorflow import keras          ->  import convlab as keras
    from tensorflow.keras import layers   ->  from convlab import layers
    tf.GradientTape                       ->  keras.GradientTape (convlab.GradientTape)
    tf.reduce_mean(x, axis)               ->  keras.ops.mean(x, axis)   (Keras 3 spells it so too)
    tf.math.l2_normalize(g)               ->  g / keras.ops.sqrt(keras.ops.sum(g * g))
    tf.random.uniform(...)                ->  keras.Tensor(np.random.uniform(...))
    @tf.function                          ->  (dropped: convlab runs eagerly)
    matplotlib's jet colormap             ->  keras.viz.jet

Stand-in model and images: the book looks into its cats-vs-dogs convnet and into Xception
trained on ImageNet, with photos of a cat and of elephants. Here all three parts look into one
model, the mini Xception that `python -m convlab train xception` trains on the shapes classes
(convlab.jobs.train_xception: 48x48 images of circles, squares and triangles; 15 epochs, about
0.99 test accuracy; --quick trains it for one epoch on 64 images), and into one of its test
images, a shape whose box is known. The gradient-ascent images are 48x48 (the model's input)
instead of 200x200, so the border the book crops is 6 pixels instead of 25. The figures the
book shows with matplotlib are written as PNG files.

Each part is checked against convlab.viz, which implements the same routines separately: the
activation grids against viz.activation_grid, a filter pattern against viz.filter_pattern from
the same starting noise, and the heatmap against viz.grad_cam(score="output"). The result is
the largest difference between the listing's Grad-CAM heatmap and viz.grad_cam's (0 to 1; a
few 1e-7 when they agree).

    python examples/chollet2e_9_4_interpretation.py [--quick] [--out DIR]
"""

import os

import numpy as np

import convlab as keras
from convlab import layers

from _standin import parse_args, result


def main(argv=None):
    args = parse_args("chollet2e_9_4_interpretation", __doc__.splitlines()[0], argv)
    from convlab import jobs
    from convlab.datasets import shapes
    keras.utils.set_seed(0)

    # ---- stand-in model and image: the shapes mini Xception, and one test image written as a file
    os.chdir(args.out)
    if args.quick:
        jobs.train_xception(epochs=1, num_train=64, num_validation=16, num_test=16, out="shapes_xception",
                            visualize=False, verbose=0)
        n_filters, per_row = 4, 2  # filter patterns drawn: the book's 64, 8 per row
    else:
        jobs.train_xception(out="shapes_xception", visualize=False)
        n_filters, per_row = 64, 8
    test = shapes.generate(8, image_size=48, part="test", min_size=0.3, max_size=0.7)
    keras.data.save_img("shape.png", test.images[3], scale=False)
    img_path = "shape.png"  # the book: a cat photo (9.4.1), elephants (9.4.3), from keras.utils.get_file
    box = test.boxes[3]
    img_size = 48  # the book: 180 (the cats-vs-dogs convnet), 200 (filter patterns), 299 (Xception)

    # ======================================================================= 9.4.1 intermediate activations
    # ---- The model
    model = keras.models.load_model("shapes_xception/model.keras")
    model.summary()

    # ---- Preprocessing a single image
    def get_img_array(img_path, target_size):
        img = keras.utils.load_img(
            img_path, target_size=target_size)
        array = keras.utils.img_to_array(img)
        array = np.expand_dims(array, axis=0)
        return array

    img_tensor = get_img_array(img_path, target_size=(img_size, img_size))

    # ---- Displaying the test picture (port: a PNG instead of plt.imshow)
    keras.utils.array_to_img(img_tensor[0]).save("test_picture.png")

    # ---- Instantiating a model that returns layer activations
    layer_outputs = []
    layer_names = []
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.MaxPooling2D)):
            layer_outputs.append(layer.output)
            layer_names.append(layer.name)
    activation_model = keras.Model(inputs=model.input, outputs=layer_outputs)

    # ---- Using the model to compute layer activations
    activations = activation_model.predict(img_tensor)
    first_layer_activation = activations[0]
    print(first_layer_activation.shape)

    # ---- Visualizing the fifth channel (port: a PNG instead of plt.matshow)
    keras.viz.write_png(keras.viz.deprocess_image(first_layer_activation[0, :, :, 5:6], crop=0),
                        "first_layer_channel_5.png")

    # ---- Visualizing every channel in every intermediate activation
    images_per_row = 16
    grid_differences = []
    for layer_name, layer_activation in zip(layer_names, activations):
        n_features = layer_activation.shape[-1]
        size = layer_activation.shape[1]
        n_cols = n_features // images_per_row
        display_grid = np.zeros(((size + 1) * n_cols - 1,
                                 images_per_row * (size + 1) - 1))
        for col in range(n_cols):
            for row in range(images_per_row):
                channel_index = col * images_per_row + row
                channel_image = layer_activation[0, :, :, channel_index].copy()
                if channel_image.sum() != 0:
                    channel_image -= channel_image.mean()
                    channel_image /= channel_image.std()
                    channel_image *= 64
                    channel_image += 128
                channel_image = np.clip(channel_image, 0, 255).astype("uint8")
                display_grid[
                    col * (size + 1): (col + 1) * size + col,
                    row * (size + 1): (row + 1) * size + row] = channel_image
        # port: the grid is written as a PNG instead of plt.imshow(display_grid, aspect="auto", cmap="viridis")
        keras.viz.write_png(display_grid.astype("uint8"), f"activations_{layer_name}.png")
        # check: the same grid from convlab.viz (each pixel a rounding of the same number)
        library_grid = keras.viz.activation_grid(layer_activation, images_per_row=images_per_row)
        grid_differences.append(int(np.abs(display_grid - library_grid).max()))
    print(f"activation grids of {len(layer_names)} layers; largest difference from viz.activation_grid: "
          f"{max(grid_differences)} (of 255)")

    # ======================================================================= 9.4.2 filter patterns
    # ---- Printing the names of all convolutional layers
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D)):
            print(layer.name)

    # ---- Creating a feature extractor model
    # (port: the book's "block3_sepconv1" of Xception; here the first separable conv of the second block)
    layer_name = [layer.name for layer in model.layers if isinstance(layer, keras.layers.SeparableConv2D)][2]
    layer = model.get_layer(name=layer_name)
    feature_extractor = keras.Model(inputs=model.input, outputs=layer.output)

    # ---- Using the feature extractor (the model rescales its own pixels: no preprocess_input)
    activation = feature_extractor(img_tensor)

    # ---- Loss function
    def compute_loss(image, filter_index):
        activation = feature_extractor(image)
        filter_activation = activation[:, 2:-2, 2:-2, filter_index]
        return keras.ops.mean(filter_activation)

    # ---- Loss maximization via stochastic gradient ascent
    def gradient_ascent_step(image, filter_index, learning_rate):
        with keras.GradientTape() as tape:
            tape.watch(image)
            loss = compute_loss(image, filter_index)
        grads = tape.gradient(loss, image)
        grads = grads / keras.ops.sqrt(keras.ops.sum(grads * grads))
        image += learning_rate * grads
        return image

    # ---- Function to generate filter visualizations
    img_width = img_size  # the book: 200
    img_height = img_size

    def generate_filter_pattern(filter_index):
        iterations = 5 if args.quick else 30
        learning_rate = 10.
        image = keras.Tensor(np.random.uniform(0.4, 0.6, size=(1, img_width, img_height, 3)).astype("float32"))
        for i in range(iterations):
            image = gradient_ascent_step(image, filter_index, learning_rate)
        return image[0].numpy()

    # ---- Utility function to convert a tensor into a valid image
    crop = 6  # the book: 25 of 200 pixels

    def deprocess_image(image):
        image -= image.mean()
        image /= image.std()
        image *= 64
        image += 128
        image = np.clip(image, 0, 255).astype("uint8")
        image = image[crop:-crop, crop:-crop, :]
        return image

    keras.viz.write_png(deprocess_image(generate_filter_pattern(filter_index=2)), "filter_pattern_2.png")

    # check: one ascent step against viz.filter_pattern's, from the same starting noise (over many
    # steps float32 rounding grows: a max pool's winner can flip)
    start = np.random.default_rng(7).uniform(0.4, 0.6, size=(1, img_width, img_height, 3)).astype("float32")
    listing_step = gradient_ascent_step(keras.Tensor(start.copy()), 1, 10.)[0].numpy()
    library_step = keras.viz.filter_pattern(model, layer_name, 1, iterations=1, initial_image=start[0])
    print(f"a gradient-ascent step vs viz.filter_pattern's: largest difference "
          f"{np.abs(listing_step - library_step).max():.3g} on values up to {np.abs(library_step).max():.3g}")

    # ---- Generating a grid of all filter response patterns in a layer
    all_images = []
    for filter_index in range(n_filters):  # the book: range(64)
        print(f"Processing filter {filter_index}")
        image = deprocess_image(
            generate_filter_pattern(filter_index)
        )
        all_images.append(image)

    margin = 5
    n = per_row  # the book: 8
    cropped_width = img_width - crop * 2
    cropped_height = img_height - crop * 2
    width = n * cropped_width + (n - 1) * margin
    height = n * cropped_height + (n - 1) * margin
    stitched_filters = np.zeros((width, height, 3))

    for i in range(n):
        for j in range(n):
            image = all_images[i * n + j]
            stitched_filters[
                (cropped_width + margin) * i: (cropped_width + margin) * i + cropped_width,
                (cropped_height + margin) * j: (cropped_height + margin) * j
                + cropped_height,
                :,
            ] = image

    keras.utils.save_img(
        f"filters_for_layer_{layer_name}.png", stitched_filters)

    # ======================================================================= 9.4.3 Grad-CAM
    # ---- Preprocessing an input image (the model rescales its own pixels: no preprocess_input)
    img_array = get_img_array(img_path, target_size=(img_size, img_size))
    preds = model.predict(img_array)
    print("predicted:", [(shapes.CLASS_NAMES[i], round(float(preds[0][i]), 3)) for i in np.argsort(-preds[0])],
          "true:", shapes.CLASS_NAMES[test.labels[3]])  # port: decode_predictions is ImageNet's

    # ---- Setting up a model that returns the last convolutional output
    # (port: Xception's "block14_sepconv2_act" and ["avg_pool", "predictions"]; the mini Xception's last
    # block ends in an Add, followed by pooling, dropout and the classifier)
    last_conv_layer_name = model.layers[-4].name
    classifier_layer_names = [layer.name for layer in model.layers[-3:]]
    last_conv_layer = model.get_layer(last_conv_layer_name)
    last_conv_layer_model = keras.Model(model.inputs, last_conv_layer.output)

    # ---- Reapplying the classifier on top of the last convolutional output
    classifier_input = keras.Input(shape=last_conv_layer.output.shape[1:])
    x = classifier_input
    for layer_name in classifier_layer_names:
        x = model.get_layer(layer_name)(x)
    classifier_model = keras.Model(classifier_input, x)

    # ---- Retrieving the gradients of the top predicted class
    with keras.GradientTape() as tape:
        last_conv_layer_output = last_conv_layer_model(img_array)
        tape.watch(last_conv_layer_output)
        preds = classifier_model(last_conv_layer_output)
        top_pred_index = int(np.argmax(preds[0].numpy()))  # the book: tf.argmax(preds[0])
        top_class_channel = preds[:, top_pred_index]

    grads = tape.gradient(top_class_channel, last_conv_layer_output)

    # ---- Gradient pooling and channel-importance weighting
    pooled_grads = keras.ops.mean(grads, axis=(0, 1, 2)).numpy()
    last_conv_layer_output = last_conv_layer_output.numpy()[0]
    for i in range(pooled_grads.shape[-1]):
        last_conv_layer_output[:, :, i] *= pooled_grads[i]
    heatmap = np.mean(last_conv_layer_output, axis=-1)

    # ---- Heatmap post-processing (port: a PNG instead of plt.matshow)
    heatmap = np.maximum(heatmap, 0)
    heatmap /= np.max(heatmap)
    keras.viz.write_png(np.uint8(255 * heatmap), "heatmap.png")
    listing_heatmap = heatmap.copy()

    # ---- Superimposing the heatmap on the original picture
    img = keras.utils.load_img(img_path)
    img = keras.utils.img_to_array(img)

    heatmap = np.uint8(255 * heatmap)

    jet_colors = keras.viz.jet(np.arange(256))[:, :3]  # the book: matplotlib.cm.get_cmap("jet")
    jet_heatmap = jet_colors[heatmap]

    jet_heatmap = keras.utils.array_to_img(jet_heatmap)
    jet_heatmap = jet_heatmap.resize((img.shape[1], img.shape[0]))
    jet_heatmap = keras.utils.img_to_array(jet_heatmap)

    superimposed_img = jet_heatmap * 0.4 + img
    superimposed_img = keras.utils.array_to_img(superimposed_img)

    save_path = "shape_cam.jpg"  # the book: elephant_cam.jpg
    superimposed_img.save(save_path)

    # ---- checks: the heatmap against viz.grad_cam (the probability's gradient, as the listing takes it),
    # and where its peak lies against the shape's box
    library_heatmap = keras.viz.grad_cam(model, img_array[0], last_conv_layer_name, score="output")
    difference = float(np.abs(listing_heatmap - library_heatmap).max())
    peak = np.unravel_index(np.argmax(keras.viz.resize_heatmap(listing_heatmap, (img_size, img_size))),
                            (img_size, img_size))
    inside = box[0] <= peak[0] < box[2] and box[1] <= peak[1] < box[3]
    print(f"Grad-CAM vs viz.grad_cam: largest difference {difference:.3g}; heatmap peak at {tuple(map(int, peak))}, "
          f"{'inside' if inside else 'outside'} the shape's box {tuple(map(int, box))}")
    result("grad_cam_max_difference", difference)


if __name__ == "__main__":
    main()
