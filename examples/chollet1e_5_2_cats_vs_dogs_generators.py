"""Deep Learning with Python, 1st edition, section 5.2, listings 5.4-5.16: a convnet trained
from scratch on a small cats-vs-dogs folder tree, read by ImageDataGenerator.flow_from_directory
and trained with fit_generator, first plain, then with data augmentation and dropout, with only
the imports changed.

    from keras import layers, models, optimizers   ->  from convlab import layers, models, optimizers
    from keras.preprocessing import image          ->  from convlab.preprocessing import image
    from keras.preprocessing.image import ImageDataGenerator
                                                   ->  from convlab.preprocessing.image import ImageDataGenerator

`optimizers.RMSprop(lr=1e-4)` and `fit_generator` are written as the book writes them:
convlab takes them, each with a warning naming today's spelling.

Stand-in data: Kaggle's cats and dogs are not downloaded. Listing 5.4 copies 1,000 cats and
1,000 dogs into train/, 500 + 500 into validation/ and test/; here the same folder tree is
written from convlab.datasets.shapes, circles in cats/ and squares in dogs/, as JPEG files that
flow_from_directory then reads back exactly as in the book. The images are 64x64 and the
target_size 64 instead of 150 (at 150x150 the book's 30 + 100 epochs take hours on a CPU; at
64x64 about half an hour). The curves (listing 5.10) are drawn with convlab.viz.plot_history
instead of matplotlib, and the augmented images (listing 5.12) are saved as PNG files
instead of shown.

    python examples/chollet1e_5_2_cats_vs_dogs_generators.py [--quick] [--out DIR]
"""

import os
import shutil

from convlab import layers
from convlab import models
from convlab import optimizers
from convlab.preprocessing import image
from convlab.preprocessing.image import ImageDataGenerator

from _standin import parse_args, result, write_image_folders


def main(argv=None):
    args = parse_args("chollet1e_5_2_cats_vs_dogs_generators", __doc__.splitlines()[0], argv)
    import convlab
    from convlab import viz
    convlab.utils.set_seed(0)

    # ---- stand-in data: the book's folder tree, written from the shapes dataset (listing 5.4 copies Kaggle's files)
    os.chdir(args.out)  # the listings' relative paths (cats_and_dogs_small, *.h5) land in --out
    SIZE = 64  # the book: 150
    if args.quick:
        per_split = {"train": 10, "validation": 5, "test": 5}
        steps_per_epoch, validation_steps, test_steps, epochs_plain, epochs_augmented = 1, 1, 1, 1, 1
    else:
        per_split = {"train": 1000, "validation": 500, "test": 500}
        steps_per_epoch, validation_steps, test_steps, epochs_plain, epochs_augmented = 100, 50, 50, 30, 100
    base_dir = 'cats_and_dogs_small'  # the book: '/Users/fchollet/Downloads/cats_and_dogs_small'
    shutil.rmtree(base_dir, ignore_errors=True)
    write_image_folders(base_dir, per_split, image_size=SIZE)

    # ---- Listing 5.4 (the folders; the copying is the stand-in above)
    train_dir = os.path.join(base_dir, 'train')
    validation_dir = os.path.join(base_dir, 'validation')
    test_dir = os.path.join(base_dir, 'test')
    train_cats_dir = os.path.join(train_dir, 'cats')
    train_dogs_dir = os.path.join(train_dir, 'dogs')
    validation_cats_dir = os.path.join(validation_dir, 'cats')
    validation_dogs_dir = os.path.join(validation_dir, 'dogs')
    test_cats_dir = os.path.join(test_dir, 'cats')
    test_dogs_dir = os.path.join(test_dir, 'dogs')
    print('total training cat images:', len(os.listdir(train_cats_dir)))
    print('total training dog images:', len(os.listdir(train_dogs_dir)))
    print('total validation cat images:', len(os.listdir(validation_cats_dir)))
    print('total validation dog images:', len(os.listdir(validation_dogs_dir)))
    print('total test cat images:', len(os.listdir(test_cats_dir)))
    print('total test dog images:', len(os.listdir(test_dogs_dir)))

    # ---- Listing 5.5: instantiating a small convnet for dogs vs. cats classification
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation='relu',
                            input_shape=(SIZE, SIZE, 3)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(128, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(128, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dense(512, activation='relu'))
    model.add(layers.Dense(1, activation='sigmoid'))
    model.summary()

    # ---- Listing 5.6: configuring the model for training
    model.compile(loss='binary_crossentropy',
                  optimizer=optimizers.RMSprop(lr=1e-4),
                  metrics=['acc'])

    # ---- Listing 5.7: using ImageDataGenerator to read images from directories
    train_datagen = ImageDataGenerator(rescale=1./255)
    test_datagen = ImageDataGenerator(rescale=1./255)

    train_generator = train_datagen.flow_from_directory(
        train_dir,
        target_size=(SIZE, SIZE),
        batch_size=20,
        class_mode='binary')

    validation_generator = test_datagen.flow_from_directory(
        validation_dir,
        target_size=(SIZE, SIZE),
        batch_size=20,
        class_mode='binary')

    for data_batch, labels_batch in train_generator:
        print('data batch shape:', data_batch.shape)
        print('labels batch shape:', labels_batch.shape)
        break

    # ---- Listing 5.8: fitting the model using a batch generator
    history = model.fit_generator(
        train_generator,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs_plain,
        validation_data=validation_generator,
        validation_steps=validation_steps)

    # ---- Listing 5.9: saving the model
    model.save('cats_and_dogs_small_1.h5')

    # ---- Listing 5.10: displaying curves of loss and accuracy during training (here: a PNG)
    acc = history.history['acc']
    val_acc = history.history['val_acc']
    print('training accuracy by epoch:', [round(a, 3) for a in acc], 'validation:', [round(a, 3) for a in val_acc])
    viz.plot_history(history, path='history_1.png')

    # ---- Listing 5.11: setting up a data augmentation configuration via ImageDataGenerator
    datagen = ImageDataGenerator(
        rotation_range=40,
        width_shift_range=0.2,
        height_shift_range=0.2,
        shear_range=0.2,
        zoom_range=0.2,
        horizontal_flip=True,
        fill_mode='nearest')

    # ---- Listing 5.12: displaying some randomly augmented training images (here: PNG files)
    fnames = [os.path.join(train_cats_dir, fname) for fname in sorted(os.listdir(train_cats_dir))]
    img_path = fnames[3]
    img = image.load_img(img_path, target_size=(SIZE, SIZE))
    x = image.img_to_array(img)
    x = x.reshape((1,) + x.shape)
    i = 0
    for batch in datagen.flow(x, batch_size=1, seed=0):
        image.array_to_img(batch[0]).save(f'augmented_{i}.png')
        i += 1
        if i % 4 == 0:
            break

    # ---- Listing 5.13: defining a new convnet that includes dropout
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation='relu',
                            input_shape=(SIZE, SIZE, 3)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(128, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(128, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(512, activation='relu'))
    model.add(layers.Dense(1, activation='sigmoid'))

    model.compile(loss='binary_crossentropy',
                  optimizer=optimizers.RMSprop(lr=1e-4),
                  metrics=['acc'])

    # ---- Listing 5.14: training the convnet using data-augmentation generators
    train_datagen = ImageDataGenerator(
        rescale=1./255,
        rotation_range=40,
        width_shift_range=0.2,
        height_shift_range=0.2,
        shear_range=0.2,
        zoom_range=0.2,
        horizontal_flip=True,)

    test_datagen = ImageDataGenerator(rescale=1./255)

    train_generator = train_datagen.flow_from_directory(
        train_dir,
        target_size=(SIZE, SIZE),
        batch_size=32,
        class_mode='binary')

    validation_generator = test_datagen.flow_from_directory(
        validation_dir,
        target_size=(SIZE, SIZE),
        batch_size=32,
        class_mode='binary')

    history = model.fit_generator(
        train_generator,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs_augmented,
        validation_data=validation_generator,
        validation_steps=validation_steps)

    # ---- Listing 5.15: saving the model
    model.save('cats_and_dogs_small_2.h5')
    viz.plot_history(history, path='history_2.png')

    # ---- the test set, as section 5.3 evaluates it
    test_generator = test_datagen.flow_from_directory(
        test_dir,
        target_size=(SIZE, SIZE),
        batch_size=20,
        class_mode='binary')
    test_loss, test_acc = model.evaluate_generator(test_generator, steps=test_steps)
    print('test acc:', test_acc)
    result("test_accuracy", test_acc)


if __name__ == "__main__":
    main()
