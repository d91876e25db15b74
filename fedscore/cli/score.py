"""``fedscore score``: score (or segment) a party's table with a trained model, in bounded memory."""

from pathlib import Path

import click

from ..params import DEFAULT_CHUNK_ROWS, UNSEEN_POLICIES
from . import main


@main.command("score")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The model file: DIR/media/model.json from 'fedscore lookalike', DIR/<party>/model.json from "
                   "'fedscore horizontal lr' or 'fedscore horizontal kmeans'.")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The table to score (CSV, or Parquet for a .parquet or .pq name): the ID column and the "
                   "columns the model was trained on; other columns are ignored.")
@click.option("--id-column", required=True, help="The column holding each row's ID.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The output file: ID and score (or segment, for a KMeans model) for every row, in the table's "
                   "order (Parquet for a .parquet or .pq name, CSV otherwise). Written only when every row was "
                   "scored.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=DEFAULT_CHUNK_ROWS, show_default=True,
              help="Rows held in memory at a time: fewer use less memory, more go a little faster.")
@click.option("--unseen", type=click.Choice(UNSEEN_POLICIES), default="error", show_default=True,
              help="A text value the model never saw in training: error stops with the row and value; zero "
                   "scores the row as having none of that column's known values.")
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
def score(model_path, data_path, id_column, out, chunk_rows, unseen, overwrite):
    """Score every row of a table with a trained model, however large the table.

    The table is read a chunk at a time and encoded exactly as the model's training
    data was (numeric columns standardised with the training statistics, text columns
    one-hot encoded, rows clipped where training clipped them), so a file of any size
    scores in the same memory and the scores equal the training run's own. Runs on this
    machine only: nothing is sent anywhere. A propensity or vertical segmentation model
    is one party's half of a joint model and cannot score alone.
    """
    from ..kit.model import score_file

    result = score_file(model_path, data_path, id_column=id_column, out=out, chunk_rows=chunk_rows, unseen=unseen,
                        overwrite=overwrite)
    click.echo(f"scored {result.rows:,} rows of {data_path} with the {result.model_kind} model {model_path} "
               f"-> {result.out}")
