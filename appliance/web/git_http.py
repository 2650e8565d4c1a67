from flask import Blueprint
blueprint = Blueprint("git", __name__)
